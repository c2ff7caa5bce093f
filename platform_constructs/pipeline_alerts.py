"""Alerts for every pipeline of an environment and for monitoring jobs, whoever adds them.

One EventBridge rule per event kind matches by ARN prefix: SageMaker names a pipeline's ARN after the
pipeline in lower case (``arn:aws:sagemaker:<region>:<account>:pipeline/<name>``), and every pipeline
of the platform is named ``<project>-<env>-<purpose>``, so a pipeline added later (monitoring,
training set, promotion) is covered without a rule of its own.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_events as events
from constructs import Construct

from platform_constructs.alert_topic import AlertTopic

PIPELINE_STATUS = "SageMaker Model Building Pipeline Execution Status Change"
STEP_STATUS = "SageMaker Model Building Pipeline Execution Step Status Change"
PROCESSING_JOB_STATE = "SageMaker Processing Job State Change"


def pipeline_arn_prefix(scope: Construct, name_prefix: str) -> str:
    """ARN prefix of the pipelines named ``<name_prefix>...`` (SageMaker lower-cases names in pipeline ARNs)."""
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:pipeline/{name_prefix.lower()}"


class PipelineAlerts(Construct):
    """Rules that tell the alarm topic about failed or stopped pipeline executions, failed steps (with
    SageMaker's failure reason: a rejected share above the ingestion gate, an AUC below the threshold,
    a job error) and failed monitoring jobs of schedules named ``<name_prefix>...``."""

    def __init__(self, scope: Construct, id_: str, *, alerts: AlertTopic, name_prefix: str, environment: str) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        prefix = pipeline_arn_prefix(self, name_prefix)
        self.execution_rule = alerts.alert_on_event(
            self,
            "ExecutionEnded",
            description=f"A pipeline execution of {name_prefix}* failed or was stopped",
            event_pattern={
                "source": ["aws.sagemaker"],
                "detail-type": [PIPELINE_STATUS],
                "detail": {
                    "currentPipelineExecutionStatus": ["Failed", "Stopped"],
                    "pipelineExecutionArn": [{"prefix": prefix}],
                },
            },
            message=f"ML platform {environment}: pipeline execution <execution> is <status>. Its failed steps and "
            "their reasons: aws sagemaker list-pipeline-execution-steps --pipeline-execution-arn <execution>",
            message_paths={
                "execution": "$.detail.pipelineExecutionArn",
                "status": "$.detail.currentPipelineExecutionStatus",
            },
        )
        self.step_rule = alerts.alert_on_event(
            self,
            "StepFailed",
            description=f"A step of a pipeline execution of {name_prefix}* failed",
            event_pattern={
                "source": ["aws.sagemaker"],
                "detail-type": [STEP_STATUS],
                "detail": {"currentStepStatus": ["Failed"], "pipelineExecutionArn": [{"prefix": prefix}]},
            },
            message=f"ML platform {environment}: step <step> of pipeline execution <execution> failed: <reason>",
            message_paths={
                "step": "$.detail.stepName",
                "execution": "$.detail.pipelineExecutionArn",
                "reason": "$.detail.failureReason",
            },
        )
        schedules = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:monitoring-schedule/{name_prefix}"
        self.monitoring_rule = alerts.alert_on_event(
            self,
            "MonitoringJobFailed",
            description=f"A monitoring job of a schedule {name_prefix}* failed",
            event_pattern={
                "source": ["aws.sagemaker"],
                "detail-type": [PROCESSING_JOB_STATE],
                "detail": {"ProcessingJobStatus": ["Failed"], "MonitoringScheduleArn": [{"prefix": schedules}]},
            },
            message=f"ML platform {environment}: monitoring job <job> of <schedule> failed: <reason>",
            message_paths={
                "job": "$.detail.ProcessingJobName",
                "schedule": "$.detail.MonitoringScheduleArn",
                "reason": "$.detail.FailureReason",
            },
        )
        self.rules: list[events.CfnRule] = [self.execution_rule, self.step_rule, self.monitoring_rule]
