"""What starts the training pipeline on a schedule, without a person.

New raw data starts ingestion and then training batch by batch, through the batch starter
(:mod:`platform_constructs.batch_ingestion`), never directly: training on a batch must wait for
that batch's ingestion.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from platform_constructs.execution_role import ServiceRole


class RetrainingTriggers(Construct):
    """An EventBridge Scheduler schedule that starts the pipeline with its default parameters (with
    ``training.source = "feature_store"``: a training set from the offline store as of now and the
    default labels), through a role that may start that pipeline only."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline_arn: str,
        pipeline_name: str,
        schedule: str,
        timezone: str,
    ) -> None:
        super().__init__(scope, id_)
        account = Stack.of(self).account

        scheduler_role = ServiceRole(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
            ),
            description=f"EventBridge Scheduler: starts {pipeline_name} on its schedule",
        )
        scheduler_role.allow(["sagemaker:StartPipelineExecution"], [pipeline_arn])
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description=f"Retrain: start {pipeline_name}",
            schedule_expression=schedule,
            schedule_expression_timezone=timezone,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(
                mode="FLEXIBLE", maximum_window_in_minutes=30
            ),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=pipeline_arn,
                role_arn=scheduler_role.role_arn,
                sage_maker_pipeline_parameters=scheduler.CfnSchedule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[]
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_event_age_in_seconds=3600, maximum_retry_attempts=3
                ),
            ),
        )
