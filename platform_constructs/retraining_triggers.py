"""What starts the pipelines without a person: a schedule (training), and new raw data (training and,
when there is one, feature ingestion)."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from platform_constructs.execution_role import ServiceRole

# Upload a batch of raw files, then this marker under the same prefix (Spark and Glue write it too):
# one pipeline execution per batch, not one per file.
READY_MARKER = "_SUCCESS"


class RetrainingTriggers(Construct):
    """An EventBridge Scheduler schedule and an EventBridge rule on the raw bucket, both starting the
    pipeline through roles that may start that pipeline only."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline_arn: str,
        pipeline_name: str,
        schedule: str,
        timezone: str,
        raw_bucket_name: str,
        raw_prefix: str,
        ingestion_pipeline_arn: str | None = None,
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

        events_role = ServiceRole(
            self,
            "NewDataRuleRole",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
            ),
            description=f"EventBridge: starts {pipeline_name} when a raw data batch is complete",
        )
        started = [pipeline_arn, *([ingestion_pipeline_arn] if ingestion_pipeline_arn else [])]
        events_role.allow(["sagemaker:StartPipelineExecution"], started)
        self.new_data_rule = events.CfnRule(
            self,
            "NewDataRule",
            description=f"Retrain when a {READY_MARKER} marker lands under s3://<raw bucket>/{raw_prefix}",
            state="ENABLED",
            event_pattern={
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [raw_bucket_name]},
                    "object": {"key": [{"wildcard": f"{raw_prefix}*{READY_MARKER}"}]},
                },
            },
            targets=[
                events.CfnRule.TargetProperty(
                    id=target_id,
                    arn=arn,
                    role_arn=events_role.role_arn,
                    sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                        pipeline_parameter_list=[]
                    ),
                    retry_policy=events.CfnRule.RetryPolicyProperty(
                        maximum_event_age_in_seconds=3600, maximum_retry_attempts=3
                    ),
                )
                for target_id, arn in zip(("TrainingPipeline", "FeatureIngestionPipeline"), started, strict=False)
            ],
        )
