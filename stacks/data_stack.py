"""Stateful resources of one environment: KMS keys, S3 buckets, the Model Registry and the Feature Store."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from config import EnvironmentConfig
from feature_schema import load_schema
from platform_constructs.encryption_key import EncryptionKey
from platform_constructs.feature_store import ATHENA_RESULTS_PREFIX, FeatureStore
from platform_constructs.model_registry import ModelRegistry
from platform_constructs.secure_bucket import SecureBucket, make_bucket_name
from platform_constructs.training_pipeline import CHECKPOINT_PREFIX, PIPELINE_PREFIX


class DataStack(Stack):
    """Keys per data domain, the platform's buckets, the Model Package Group and the feature group.

    Everything here is kept on stack deletion outside dev (``removal_policy = "retain"``), and the
    logical IDs are pinned by ``tests/test_stateful_ids.py``: renaming a construct here would replace
    a bucket or a key.
    """

    def __init__(
        self, scope: Construct, id_: str, *, env_config: EnvironmentConfig, project: str, **kwargs: Any
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        retain = env_config.retain_data
        days = env_config.data
        alias = f"alias/{project}/{env_config.name}"

        # One key per data domain (docs/decisions/0002-one-kms-key-per-data-domain.md).
        self.data_key = EncryptionKey(
            self,
            "DataKey",
            alias=f"{alias}/data",
            retain=retain,
            description="Customer data: raw and processed data, features, captured requests, monitoring reports",
        )
        self.model_key = EncryptionKey(
            self,
            "ModelKey",
            alias=f"{alias}/model",
            retain=retain,
            description="Models: training outputs, model artifacts, endpoint storage volumes",
        )
        self.logs_key = EncryptionKey(
            self,
            "LogsKey",
            alias=f"{alias}/logs",
            retain=retain,
            description="Operations: CloudWatch Logs of the platform and alarm notifications",
        )
        self.logs_key.allow_cloudwatch_logs()
        self.logs_key.allow_alarm_notifications()
        self.logs_key.allow_budget_notifications()

        self.project, self.env_name = project, env_config.name
        self.access_logs_bucket = SecureBucket(
            self,
            "AccessLogsBucket",
            bucket_name=self.bucket_name("access-logs"),
            encryption_key=None,
            access_logs_bucket=None,
            retain=retain,
            noncurrent_version_expiry=Duration.days(days.noncurrent_version_expiry_days),
            incomplete_upload_expiry=Duration.days(days.incomplete_upload_expiry_days),
            object_expiry=Duration.days(days.access_log_expiry_days),
        )

        def bucket(
            id_: str,
            purpose: str,
            key: kms.IKey,
            expiry_days: int | None = None,
            events: bool = False,
            prefix_expiry: dict[str, Duration] | None = None,
        ) -> SecureBucket:
            return SecureBucket(
                self,
                id_,
                bucket_name=self.bucket_name(purpose),
                encryption_key=key,
                access_logs_bucket=self.access_logs_bucket,
                retain=retain,
                noncurrent_version_expiry=Duration.days(days.noncurrent_version_expiry_days),
                incomplete_upload_expiry=Duration.days(days.incomplete_upload_expiry_days),
                object_expiry=Duration.days(expiry_days) if expiry_days else None,
                event_bridge=events,
                prefix_expiry=prefix_expiry,
            )

        self.raw_bucket = bucket("RawDataBucket", "raw", self.data_key, events=True)
        # Working data of the pipelines and of training-set queries, and spot checkpoints, expire by prefix.
        working: dict[str, Duration] = {ATHENA_RESULTS_PREFIX: Duration.days(days.query_result_expiry_days)}
        if days.pipeline_working_expiry_days:
            working[PIPELINE_PREFIX] = Duration.days(days.pipeline_working_expiry_days)
        self.processed_bucket = bucket("ProcessedDataBucket", "processed", self.data_key, prefix_expiry=working)
        self.feature_store_bucket = bucket("FeatureStoreBucket", "features", self.data_key)
        self.model_artifacts_bucket = bucket(
            "ModelArtifactsBucket",
            "models",
            self.model_key,
            prefix_expiry={CHECKPOINT_PREFIX: Duration.days(days.checkpoint_expiry_days)},
        )
        self.capture_bucket = bucket("DataCaptureBucket", "capture", self.data_key, days.capture_expiry_days)
        self.monitoring_bucket = bucket(
            "MonitoringReportsBucket", "monitoring", self.data_key, days.monitoring_report_expiry_days
        )

        self.model_registry = ModelRegistry(
            self,
            "ModelRegistry",
            group_name=f"{project}-{env_config.name}",
            description=f"Churn models of {env_config.name}; approve a version to deploy it",
        )

        self.feature_store = FeatureStore(
            self,
            "FeatureStore",
            schema=load_schema(),
            settings=env_config.feature_store,
            project=project,
            env_name=env_config.name,
            # Literal ARNs in the role's policy (the bucket names are explicit).
            features_bucket=self.import_bucket(self, "features", self.data_key),
            results_bucket=self.import_bucket(self, "processed", self.data_key),
            key=self.data_key,
            retain=retain,
        )
        self.feature_store.node.add_dependency(self.feature_store_bucket, self.processed_bucket)

        for name, value in (
            ("RawDataBucketName", self.bucket_name("raw")),
            ("ModelArtifactsBucketName", self.bucket_name("models")),
            ("ModelPackageGroupName", self.model_registry.group_name),
            ("DataKeyArn", self.data_key.key_arn),
        ):
            CfnOutput(self, name, value=value)

    def share_models_with(self, *, account: str, principal_arn: str, object_patterns: dict[str, str]) -> None:
        """Let one role of another account (the receiving environment's model intake) read this
        environment's model versions and the objects they name: ``object_patterns`` maps a bucket purpose
        (models, processed, monitoring) to the key pattern it may read; KMS decrypts through S3 only."""
        self.model_registry.allow_reading(account=account, principal_arn=principal_arn)
        buckets = {
            "models": self.model_artifacts_bucket,
            "processed": self.processed_bucket,
            "monitoring": self.monitoring_bucket,
        }
        reader = iam.AccountPrincipal(account)
        only_intake = {"ArnEquals": {"aws:PrincipalArn": principal_arn}}
        for purpose, pattern in object_patterns.items():
            bucket = buckets[purpose]
            bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="ModelIntakeReads",
                    principals=[reader],
                    actions=["s3:GetObject"],
                    resources=[bucket.arn_for_objects(pattern)],
                    conditions=only_intake,
                )
            )
        for key in (self.model_key, self.data_key):
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="ModelIntakeDecryptsThroughS3",
                    principals=[reader],
                    actions=["kms:Decrypt"],
                    resources=["*"],  # in a key policy "*" means this key
                    conditions={**only_intake, "StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}},
                )
            )

    def bucket_name(self, purpose: str) -> str:
        return make_bucket_name(self.project, self.env_name, purpose, self.account, self.region)

    def import_bucket(self, scope: Construct, purpose: str, key: kms.IKey | None) -> s3.IBucket:
        """This environment's bucket for ``purpose``, referenced by its literal name from ``scope``
        (another stack): IAM statements then name the bucket's ARN, not a cross-stack token."""
        return s3.Bucket.from_bucket_attributes(
            scope,
            f"{purpose.title().replace('-', '')}Bucket",
            bucket_name=self.bucket_name(purpose),
            encryption_key=key,
        )
