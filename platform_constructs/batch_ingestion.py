"""New raw data, batch by batch: each completed batch ingested once, in order, then trained on.

EventBridge cannot hand the ``_SUCCESS`` marker's key to a pipeline as a parameter, so a small
function (``functions/batch_starter.py``, one invocation at a time) receives the marker events and
the two pipelines' status changes, keeps a manifest of batches in S3 (conditional writes), starts
the ingestion pipeline with ``InputDataUri`` = the batch's folder, and starts the training pipeline
only when that batch's ingestion succeeded. See docs/decisions/0014 for why this holds exactly once.
"""

from __future__ import annotations

import json

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from platform_constructs.platform_function import PlatformFunction

# Upload a batch of raw files under <raw prefix><batch>/, then this marker in the same folder (Spark
# and Glue write it too): one ingestion per batch, not one per file.
READY_MARKER = "_SUCCESS"
MANIFEST_KEY = "batch-manifest/manifest.json"
STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Status Change"
# Executing too: RetryPipelineExecution of a failed execution runs it again under the same ARN.
TRACKED_STATUSES = ["Executing", "Succeeded", "Failed", "Stopped"]
RESUME_SCHEDULE = "rate(30 minutes)"


class BatchIngestionStarter(Construct):
    """The batch starter function, its manifest location and the three rules that invoke it.

    - ``NewDataRule``: ``Object Created`` of ``<raw prefix>*_SUCCESS`` in the raw bucket;
    - ``PipelineStatusRule``: status changes of the ingestion and the training pipeline;
    - ``ResumeRule``: every 30 minutes, finishes a start an earlier invocation could not make.

    Its role may read and write one object (the manifest) and start and list executions of the two
    pipelines, nothing else.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        raw_bucket_name: str,
        raw_prefix: str,
        manifest_bucket: s3.IBucket,
        ingestion_pipeline_name: str,
        ingestion_pipeline_arn: str,
        training_pipeline_name: str | None,
        training_pipeline_arn: str | None,
        training_input_parameter: str,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        security_group: ec2.ISecurityGroup,
        logs_key: kms.IKey,
        alarm_topic: sns.ITopic,
        log_retention_days: int,
        retain: bool,
    ) -> None:
        super().__init__(scope, id_)
        account = Stack.of(self).account
        self.manifest_uri = f"s3://{manifest_bucket.bucket_name}/{MANIFEST_KEY}"
        pipelines = [ingestion_pipeline_arn, *([training_pipeline_arn] if training_pipeline_arn else [])]
        self.function = PlatformFunction(
            self,
            "Function",
            handler="batch_starter.handler",
            description="Batch starter: ingests each completed raw batch once, in order, then trains on it",
            vpc=vpc,
            subnets=subnets,
            security_group=security_group,
            key=logs_key,
            alarm_topic=alarm_topic,
            log_retention_days=log_retention_days,
            retain=retain,
            environment={
                "RAW_BUCKET": raw_bucket_name,
                "RAW_PREFIX": raw_prefix,
                "MANIFEST_BUCKET": manifest_bucket.bucket_name,
                "MANIFEST_KEY": MANIFEST_KEY,
                "INGESTION_PIPELINE": ingestion_pipeline_name,
                "TRAINING_PIPELINE": training_pipeline_name or "",
                "TRAINING_INPUT_PARAMETER": training_input_parameter,
            },
            timeout_seconds=120,
            # One invocation at a time: claims in the manifest are never raced (the default, said here
            # because exactly-once relies on it).
            reserved_concurrency=1,
        )
        role = self.function.role
        role.allow(["s3:GetObject", "s3:PutObject"], [manifest_bucket.arn_for_objects(MANIFEST_KEY)])
        # Without ListBucket, S3 answers a missing manifest (the first batch) with 403 instead of 404.
        role.allow(["s3:ListBucket"], [manifest_bucket.bucket_arn], {"StringEquals": {"s3:prefix": MANIFEST_KEY}})
        if manifest_bucket.encryption_key:
            role.use_key(manifest_bucket.encryption_key, decrypt=True, encrypt=True)
        role.allow(["sagemaker:StartPipelineExecution", "sagemaker:ListPipelineExecutions"], pipelines)

        self.new_data_rule = self._rule(
            "NewDataRule",
            description=f"A raw batch is complete: its {READY_MARKER} marker landed under s3://<raw bucket>/{raw_prefix}",
            event_pattern={
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [raw_bucket_name]},
                    "object": {"key": [{"wildcard": f"{raw_prefix}*{READY_MARKER}"}]},
                },
            },
        )
        self.status_rule = self._rule(
            "PipelineStatusRule",
            description="An ingestion or training execution changed status: move its batch on",
            event_pattern={
                "source": ["aws.sagemaker"],
                "detail-type": [STATUS_CHANGE],
                "detail": {"pipelineArn": pipelines, "currentPipelineExecutionStatus": TRACKED_STATUSES},
            },
        )
        self.resume_rule = self._rule(
            "ResumeRule",
            description="Finish any batch start an earlier invocation of the batch starter could not make",
            schedule_expression=RESUME_SCHEDULE,
            input_=json.dumps({"action": "resume"}),
        )
        for rule in (self.new_data_rule, self.status_rule, self.resume_rule):
            lambda_.CfnPermission(
                rule,
                "InvokeBatchStarter",
                action="lambda:InvokeFunction",
                function_name=self.function.function_arn,
                principal="events.amazonaws.com",
                source_arn=rule.attr_arn,
                source_account=account,
            )

    def _rule(
        self,
        id_: str,
        *,
        description: str,
        event_pattern: dict[str, object] | None = None,
        schedule_expression: str | None = None,
        input_: str | None = None,
    ) -> events.CfnRule:
        return events.CfnRule(
            self,
            id_,
            description=description,
            state="ENABLED",
            event_pattern=event_pattern,
            schedule_expression=schedule_expression,
            targets=[
                events.CfnRule.TargetProperty(
                    id="BatchStarter",
                    arn=self.function.function_arn,
                    input=input_,
                    retry_policy=events.CfnRule.RetryPolicyProperty(
                        maximum_event_age_in_seconds=86400, maximum_retry_attempts=185
                    ),
                )
            ],
        )
