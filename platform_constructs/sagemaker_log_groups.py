"""SageMaker's job log groups, created before any job with the logs key and a retention.

SageMaker writes the logs of every training, processing (monitoring included) and transform job of an
account and region to one log group per job kind, and creates the group on first use: unencrypted by
a customer key and kept forever. Created here first, the groups carry the logs key and the
environment's retention, and SageMaker writes into them as they are (CloudWatch Logs encrypts with the
key on the writer's behalf; the key policy allows CloudWatch Logs of this account and region).

The names are per account and region, not per environment: CloudFormation fails to create a group that
exists, so only one environment of an account may own them (``operations.sagemaker_job_log_groups``).
Endpoint log groups are per endpoint (``/aws/sagemaker/Endpoints/<endpoint>``) and live with the
endpoint (``ModelEndpoint``).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from platform_constructs.retention import log_retention

JOB_LOG_GROUPS = {
    "TrainingJobLogs": "/aws/sagemaker/TrainingJobs",
    "ProcessingJobLogs": "/aws/sagemaker/ProcessingJobs",
    "TransformJobLogs": "/aws/sagemaker/TransformJobs",
}


class SageMakerJobLogGroups(Construct):
    """``/aws/sagemaker/TrainingJobs``, ``ProcessingJobs`` and ``TransformJobs`` with the logs key."""

    def __init__(self, scope: Construct, id_: str, *, key: kms.IKey, retention_days: int, retain: bool) -> None:
        super().__init__(scope, id_)
        self.log_groups = {
            name: logs.LogGroup(
                self,
                construct_id,
                log_group_name=name,
                encryption_key=key,
                retention=log_retention(retention_days),
                removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            )
            for construct_id, name in JOB_LOG_GROUPS.items()
        }
