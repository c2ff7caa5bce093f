"""What a point-in-time training set is built from: the offline store, the labels table, the Athena workgroup.

- :class:`LabelsTable`: the Glue table over ``s3://<raw bucket>/labels/<dataset>/`` (CSV with a header:
  record identifier, ``label_time``, label), partitioned by dataset with partition projection, so a
  new dataset folder is queryable without crawlers or DDL;
- :class:`TrainingSetSource`: the names, buckets, key and security group the training pipeline's
  ``BuildTrainingSet`` step uses; :func:`allow_training_set_queries` gives a role exactly what that
  query needs: start queries in one workgroup, read two tables, read the offline store and the
  labels, write the workgroup's results.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_glue as glue
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from feature_schema import FeatureSchema
from platform_constructs.execution_role import ServiceRole
from platform_constructs.feature_store import ATHENA_RESULTS_PREFIX, OFFLINE_PREFIX
from training_set import LABEL_TIME_COLUMN, LABELS_PARTITION

LABELS_PREFIX = "labels/"
LABELS_TABLE = "labels"
# Athena's CSV reader: handles quoted fields; with it every column is text (the query casts the label).
OPEN_CSV_SERDE = "org.apache.hadoop.hive.serde2.OpenCSVSerde"

# athena:StartQueryExecution and what reading a query's state and stopping it need (Athena's IAM docs).
ATHENA_QUERY_ACTIONS = (
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",
    "athena:GetWorkGroup",
)
# Athena reads the Glue Data Catalog with the caller's permissions.
GLUE_READ_ACTIONS = ("glue:GetDatabase", "glue:GetTable", "glue:GetPartitions")


@dataclass(frozen=True)
class TrainingSetSource:
    """Everything the training-set query reads and where its results land."""

    workgroup_name: str
    database_name: str
    feature_table_name: str
    labels_table_name: str
    features_bucket: s3.IBucket  # the offline store (Iceberg) under OFFLINE_PREFIX
    labels_bucket: s3.IBucket  # the raw bucket, labels under LABELS_PREFIX
    results_bucket: s3.IBucket  # the workgroup's enforced result location, under ATHENA_RESULTS_PREFIX
    key: kms.IKey  # the data key: offline store, labels, results
    security_group: ec2.ISecurityGroup  # the query jobs' group
    labels_dataset: str  # the default dataset

    @property
    def labels_root_uri(self) -> str:
        return f"s3://{self.labels_bucket.bucket_name}/{LABELS_PREFIX}"

    @property
    def default_labels_uri(self) -> str:
        return f"{self.labels_root_uri}{self.labels_dataset}/"


class LabelsTable(Construct):
    """The labels as an external Glue table in the feature store's database, one partition per dataset."""

    def __init__(
        self, scope: Construct, id_: str, *, schema: FeatureSchema, database_name: str, bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.table_name = LABELS_TABLE
        root = f"s3://{bucket.bucket_name}/{LABELS_PREFIX}"
        columns = (schema.record_identifier.name, LABEL_TIME_COLUMN, schema.label.name)
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=stack.account,
            database_name=database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=LABELS_TABLE,
                description="Churn labels: one row per customer and label time; each dataset is a folder "
                f"{root}<dataset>/ of CSV files with a header (training_code/build_training_set.py)",
                table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "csv",
                    "skip.header.line.count": "1",
                    # Partition projection: the query names the dataset; no crawler, no ADD PARTITION.
                    "projection.enabled": "true",
                    f"projection.{LABELS_PARTITION}.type": "injected",
                    "storage.location.template": f"{root}${{{LABELS_PARTITION}}}/",
                },
                partition_keys=[glue.CfnTable.ColumnProperty(name=LABELS_PARTITION, type="string")],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=root,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library=OPEN_CSV_SERDE,
                        parameters={"separatorChar": ",", "quoteChar": '"', "escapeChar": "\\"},
                    ),
                    columns=[glue.CfnTable.ColumnProperty(name=name, type="string") for name in columns],
                ),
            ),
        )


def allow_training_set_queries(role: ServiceRole, source: TrainingSetSource) -> None:
    """Let ``role`` run the training-set query: one workgroup, two tables, the offline store and labels."""
    stack = Stack.of(role)
    role.allow(
        ATHENA_QUERY_ACTIONS,
        [stack.format_arn(service="athena", resource="workgroup", resource_name=source.workgroup_name)],
    )

    def glue_arn(resource: str, name: str | None = None) -> str:
        return stack.format_arn(service="glue", resource=resource, resource_name=name)

    role.allow(
        GLUE_READ_ACTIONS,
        [
            glue_arn("catalog"),
            glue_arn("database", source.database_name),
            glue_arn("table", f"{source.database_name}/{source.feature_table_name}"),
            glue_arn("table", f"{source.database_name}/{source.labels_table_name}"),
        ],
    )
    # Athena reads the tables' files with the caller's credentials.
    role.read_objects(
        source.features_bucket,
        OFFLINE_PREFIX,
        reason="Athena reads the offline store's Iceberg data and metadata files, under keys Feature Store "
        "generates inside the offline-store prefix, with the querying role's credentials.",
    )
    role.read_objects(
        source.labels_bucket,
        LABELS_PREFIX,
        reason="The training-set query reads the labels dataset the execution's LabelsUri names; every "
        "dataset is a folder of the labels prefix.",
    )
    # Athena writes the results with the caller's credentials (SSE-KMS with the data key, as the
    # workgroup enforces); the job reads them back.
    results = (
        "Athena names each result object by its query execution ID inside the workgroup's result prefix, "
        "which the workgroup enforces."
    )
    role.read_objects(source.results_bucket, ATHENA_RESULTS_PREFIX, reason=results)
    role.write_objects(source.results_bucket, ATHENA_RESULTS_PREFIX, reason=results)
    role.allow(
        ["s3:GetBucketLocation"],
        [bucket.bucket_arn for bucket in (source.features_bucket, source.labels_bucket, source.results_bucket)],
    )
    role.use_key(source.key, decrypt=True, encrypt=True)
