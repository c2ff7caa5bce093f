"""The training workflow of one environment: the SageMaker Pipeline and what starts it."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from config import EnvironmentConfig
from feature_schema import load_schema
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.batch_ingestion import BatchIngestionStarter
from platform_constructs.code_bundle import training_code_bundle
from platform_constructs.feature_ingestion import FeatureIngestionPipeline
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.retraining_triggers import RetrainingTriggers
from platform_constructs.serving_image import ServingImage
from platform_constructs.training_pipeline import TrainingPipeline
from platform_constructs.training_set_source import LabelsTable, TrainingSetSource
from stacks.data_stack import DataStack

RAW_PREFIX = "churn/"


class TrainingStack(Stack):
    """Training pipeline ([training set from the feature store,] processing, training or tuning,
    evaluation, AUC gate, baseline, registry) with its job roles, started weekly or monthly by a
    schedule; the feature-ingestion pipeline; and the batch starter, which ingests each completed
    raw batch once, in order, and starts training on it after its ingestion succeeded."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        env_config: EnvironmentConfig,
        project: str,
        data: DataStack,
        network: IsolatedNetwork,
        alerts: AlertTopic,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        name = f"{project}-{env_config.name}-training"
        settings = env_config.training
        # The image every registered model version is served with (inference_code/ on the managed image).
        self.serving_image = ServingImage(self, "ServingImage")
        raw_bucket = data.import_bucket(self, "raw", data.data_key)
        processed_bucket = data.import_bucket(self, "processed", data.data_key)
        self.pipeline: TrainingPipeline | None = None
        if not settings.enabled:
            # The environment serves models another one promotes to it (config [promotion]): no training
            # pipeline and no retraining schedule; the serving image, feature ingestion and the batch
            # starter (which then ingests batches and starts no training) stay.
            code = s3_assets.Asset(self, "TrainingCode", path=str(training_code_bundle()))
            self.ingestion = self._feature_ingestion(
                env_config, project, data, network, raw_bucket, processed_bucket, code
            )
            self.batches = self._batch_starter(env_config, data, network, alerts, processed_bucket, None)
            self.add_stack_dependency(data)
            CfnOutput(self, "FeatureIngestionPipelineName", value=self.ingestion.pipeline_name)
            CfnOutput(self, "BatchManifest", value=self.batches.manifest_uri)
            CfnOutput(self, "BatchStarterFunctionName", value=self.batches.function.function.function_name)
            return
        training_set_source = None
        if settings.source == "feature_store":
            network.require_endpoint("athena", used_by="the training-set step (training.source = 'feature_store')")
            feature_store = data.feature_store
            self.labels = LabelsTable(
                self, "Labels", schema=load_schema(), database_name=feature_store.database_name, bucket=raw_bucket
            )
            training_set_source = TrainingSetSource(
                workgroup_name=feature_store.workgroup.name,
                database_name=feature_store.database_name,
                feature_table_name=feature_store.table_name,
                labels_table_name=self.labels.table_name,
                features_bucket=data.import_bucket(self, "features", data.data_key),
                labels_bucket=raw_bucket,
                results_bucket=processed_bucket,
                key=data.data_key,
                security_group=network.query_job_security_group,
                labels_dataset=settings.labels_dataset,
            )
        self.pipeline = TrainingPipeline(
            self,
            "TrainingPipeline",
            pipeline_name=name,
            settings=env_config.training,
            raw_bucket=raw_bucket,
            processed_bucket=processed_bucket,
            model_artifacts_bucket=data.import_bucket(self, "models", data.model_key),
            monitoring_bucket=data.import_bucket(self, "monitoring", data.data_key),
            data_key=data.data_key,
            model_key=data.model_key,
            model_package_group_name=data.model_registry.group_name,
            vpc=network.vpc,
            subnets=network.selected_subnets,
            security_group=network.job_security_group,
            serving_image_uri=self.serving_image.image_uri,
            training_set_source=training_set_source,
            allowed_instance_types=env_config.allowed_instance_types,
            serving_instance_types=tuple(
                sorted({env_config.serving.instance_type, env_config.serving.transform_instance_type})
            ),
            monitoring=env_config.monitoring,
        )
        self.ingestion = self._feature_ingestion(
            env_config, project, data, network, raw_bucket, processed_bucket, self.pipeline.code
        )
        self.triggers = RetrainingTriggers(
            self,
            "RetrainingTriggers",
            pipeline_arn=self.pipeline.pipeline_arn,
            pipeline_name=name,
            schedule=settings.schedule,
            timezone=settings.schedule_timezone,
        )
        self.triggers.node.add_dependency(self.pipeline.pipeline)
        self.batches = self._batch_starter(env_config, data, network, alerts, processed_bucket, self.pipeline)
        self.batches.node.add_dependency(self.pipeline.pipeline, self.ingestion.pipeline)
        self.add_stack_dependency(data)
        CfnOutput(self, "PipelineName", value=name)
        CfnOutput(self, "FeatureIngestionPipelineName", value=self.ingestion.pipeline_name)
        CfnOutput(self, "BatchManifest", value=self.batches.manifest_uri)
        CfnOutput(self, "BatchStarterFunctionName", value=self.batches.function.function.function_name)

    def _feature_ingestion(
        self,
        env_config: EnvironmentConfig,
        project: str,
        data: DataStack,
        network: IsolatedNetwork,
        raw_bucket: s3.IBucket,
        processed_bucket: s3.IBucket,
        code: s3_assets.Asset,
    ) -> FeatureIngestionPipeline:
        ingestion = FeatureIngestionPipeline(
            self,
            "FeatureIngestion",
            pipeline_name=f"{project}-{env_config.name}-ingest-features",
            feature_group_name=data.feature_store.group_name,
            settings=env_config.training,
            feature_store=env_config.feature_store,
            code=code,
            raw_bucket=raw_bucket,
            raw_prefix=RAW_PREFIX,
            processed_bucket=processed_bucket,
            data_key=data.data_key,
            vpc=network.vpc,
            subnets=network.selected_subnets,
            security_group=network.job_security_group,
            allowed_instance_types=env_config.allowed_instance_types,
        )
        network.require_endpoint("sagemaker.featurestore-runtime", used_by="feature ingestion (PutRecord)")
        return ingestion

    def _batch_starter(
        self,
        env_config: EnvironmentConfig,
        data: DataStack,
        network: IsolatedNetwork,
        alerts: AlertTopic,
        processed_bucket: s3.IBucket,
        training: TrainingPipeline | None,
    ) -> BatchIngestionStarter:
        network.require_endpoint(
            "sagemaker.api", used_by="the batch starter (starts the ingestion and training pipelines)"
        )
        return BatchIngestionStarter(
            self,
            "BatchStarter",
            raw_bucket_name=data.bucket_name("raw"),
            raw_prefix=RAW_PREFIX,
            manifest_bucket=processed_bucket,
            ingestion_pipeline_name=self.ingestion.pipeline_name,
            ingestion_pipeline_arn=self.ingestion.pipeline_arn,
            training_pipeline_name=training.pipeline_name if training else None,
            training_pipeline_arn=training.pipeline_arn if training else None,
            # A raw-source pipeline trains on the batch's files; a feature-store one on the offline store.
            training_input_parameter="InputDataUri" if env_config.training.source == "raw" else "",
            vpc=network.vpc,
            subnets=network.selected_subnets,
            security_group=network.function_security_group,
            logs_key=data.logs_key,
            alarm_topic=alerts.topic,
            log_retention_days=env_config.operations.log_retention_days,
            retain=env_config.retain_data,
        )
