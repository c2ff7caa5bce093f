"""The customer feature group of one environment, defined by the feature schema.

- Online store: KMS-encrypted, TTL and storage type from config.
- Offline store: Iceberg tables in the features bucket under ``offline-store/``, KMS-encrypted,
  registered in this environment's Glue database; written by a role that may touch that prefix,
  that database and that table only.
- An Athena workgroup for training-set queries (``training_code/training_set.py``): results
  encrypted with the data key, its settings enforced on every query.

The feature group carries the metadata :mod:`policy.feature_group_guard` reads to refuse, at
synth, a change that CloudFormation could only make by replacing the group.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from config import FeatureStoreSettings
from feature_schema import FeatureSchema
from platform_constructs.execution_role import ServiceRole
from policy.feature_group_guard import LOCK_METADATA_KEY

GROUP_BASENAME = "customers"
OFFLINE_PREFIX = "offline-store/"
ATHENA_RESULTS_PREFIX = "athena-results/"
ATHENA_SCAN_LIMIT_BYTES = 100 * 1024**3  # a runaway training-set query stops at 100 GiB scanned

# The actions a writer of records needs, and the key actions PutRecord needs on the online store's key.
PUT_RECORD_ACTIONS = ("sagemaker:PutRecord", "sagemaker:DescribeFeatureGroup")
ONLINE_STORE_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey")


def feature_group_name(project: str, env_name: str, version: int) -> str:
    return f"{project}-{env_name}-{GROUP_BASENAME}-v{version}"


def glue_database_name(project: str, env_name: str) -> str:
    """Glue and Athena names: lowercase letters, digits and underscores."""
    return f"{project}_{env_name}_features".replace("-", "_")


def offline_table_name(version: int) -> str:
    return f"{GROUP_BASENAME}_v{version}"


def feature_group_arn(scope: Construct, name: str) -> str:
    return Stack.of(scope).format_arn(service="sagemaker", resource="feature-group", resource_name=name)


class FeatureStore(Construct):
    """The feature group, its Glue database, the offline-store role and the Athena workgroup."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        schema: FeatureSchema,
        settings: FeatureStoreSettings,
        project: str,
        env_name: str,
        features_bucket: s3.IBucket,
        results_bucket: s3.IBucket,
        key: kms.IKey,
        retain: bool,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
        self.group_name = feature_group_name(project, env_name, settings.group_version)
        self.group_arn = feature_group_arn(self, self.group_name)
        self.database_name = glue_database_name(project, env_name)
        self.table_name = offline_table_name(settings.group_version)

        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description=f"Offline feature store of {project} {env_name} (Iceberg tables written by Feature Store)",
            ),
        )
        self.database.apply_removal_policy(removal)

        self.offline_store_role = self._offline_store_role(stack, features_bucket, key)
        online: dict[str, object] = {"EnableOnlineStore": settings.online_store}
        if settings.online_store:
            online["StorageType"] = settings.storage_type
            online["SecurityConfig"] = {"KmsKeyId": key.key_arn}
            if settings.ttl_days:
                online["TtlDuration"] = {"Unit": "Days", "Value": settings.ttl_days}
        throughput = sagemaker.CfnFeatureGroup.ThroughputConfigProperty(
            throughput_mode=settings.throughput_mode,
            provisioned_read_capacity_units=settings.read_capacity_units or None,
            provisioned_write_capacity_units=settings.write_capacity_units or None,
        )
        # Online and offline store configs are JSON-typed in the CloudFormation spec: plain mappings
        # keep their PascalCase keys.
        self.feature_group = sagemaker.CfnFeatureGroup(
            self,
            "FeatureGroup",
            feature_group_name=self.group_name,
            description=f"{schema.name} features of {env_name}, defined by training_code/feature_schema.json",
            record_identifier_feature_name=schema.record_identifier.name,
            event_time_feature_name=schema.event_time.name,
            feature_definitions=[
                sagemaker.CfnFeatureGroup.FeatureDefinitionProperty(feature_name=name, feature_type=kind)
                for name, kind in schema.feature_store_definitions()
            ],
            online_store_config=online,
            offline_store_config={
                "S3StorageConfig": {
                    "S3Uri": f"s3://{features_bucket.bucket_name}/{OFFLINE_PREFIX.rstrip('/')}",
                    "KmsKeyId": key.key_arn,
                },
                "TableFormat": "Iceberg",
                "DataCatalogConfig": {
                    "Catalog": "AwsDataCatalog",
                    "Database": self.database_name,
                    "TableName": self.table_name,
                },
            },
            role_arn=self.offline_store_role.role_arn,
            throughput_config=throughput,
        )
        self.feature_group.apply_removal_policy(removal)
        # Feature Store checks the role when it creates the group, and creates the table in the database.
        self.feature_group.node.add_dependency(self.offline_store_role.policy, self.database)
        self.feature_group.add_metadata(
            LOCK_METADATA_KEY, {"lock": f"{env_name}/{GROUP_BASENAME}", "allowReplacement": settings.allow_replacement}
        )

        self.workgroup = self._athena_workgroup(project, env_name, results_bucket, key, retain)
        for name, value in (
            ("FeatureGroupName", self.group_name),
            ("OfflineStoreDatabase", self.database_name),
            ("OfflineStoreTable", self.table_name),
            ("AthenaWorkGroup", self.workgroup.name),
        ):
            CfnOutput(self, name, value=value)

    def _offline_store_role(self, stack: Stack, bucket: s3.IBucket, key: kms.IKey) -> ServiceRole:
        role = ServiceRole(
            self,
            "OfflineStoreRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"Feature Store: writes the offline store of {self.group_name}",
        )
        objects = bucket.arn_for_objects(f"{OFFLINE_PREFIX}*")
        reason = (
            "Feature Store writes Parquet data and Iceberg metadata files under keys it generates "
            "(account, region, group name, creation time) inside the offline-store prefix."
        )
        role.allow(["s3:PutObject", "s3:PutObjectAcl", "s3:GetObject"], [objects], wildcard_reason=reason)
        role.allow(["s3:GetBucketAcl"], [bucket.bucket_arn])
        role.allow(["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"], [key.key_arn])

        def glue_arn(resource: str, name: str | None = None) -> str:
            return stack.format_arn(service="glue", resource=resource, resource_name=name)

        role.allow(
            ["glue:GetTable", "glue:UpdateTable"],
            [
                glue_arn("catalog"),
                glue_arn("database", self.database_name),
                glue_arn("table", f"{self.database_name}/{self.table_name}"),
            ],
        )
        return role

    def _athena_workgroup(
        self, project: str, env_name: str, results_bucket: s3.IBucket, key: kms.IKey, retain: bool
    ) -> athena.CfnWorkGroup:
        return athena.CfnWorkGroup(
            self,
            "QueryWorkGroup",
            name=f"{project}-{env_name}-features",
            description="Point-in-time training-set queries on the offline feature store",
            state="ENABLED",
            recursive_delete_option=not retain,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=ATHENA_SCAN_LIMIT_BYTES,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{results_bucket.bucket_name}/{ATHENA_RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=key.key_arn
                    ),
                ),
            ),
        )


def allow_put_record(role: ServiceRole, group_name: str, key: kms.IKey) -> None:
    """Let ``role`` write records to one feature group (and nothing else of Feature Store)."""
    role.allow(PUT_RECORD_ACTIONS, [feature_group_arn(role, group_name)])
    role.allow(ONLINE_STORE_KEY_ACTIONS, [key.key_arn])
