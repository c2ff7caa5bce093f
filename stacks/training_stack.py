"""The training workflow of one environment: the SageMaker Pipeline and what starts it."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.feature_ingestion import FeatureIngestionPipeline
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.retraining_triggers import RetrainingTriggers
from platform_constructs.serving_image import ServingImage
from platform_constructs.training_pipeline import TrainingPipeline
from stacks.data_stack import DataStack

RAW_PREFIX = "churn/"


class TrainingStack(Stack):
    """Training pipeline (processing, training or tuning, evaluation, AUC gate, baseline, registry)
    with its job roles, started weekly or monthly by a schedule and whenever raw data arrives; and
    the feature-ingestion pipeline, started with it on new raw data."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        env_config: EnvironmentConfig,
        project: str,
        data: DataStack,
        network: IsolatedNetwork,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        name = f"{project}-{env_config.name}-training"
        # The image every registered model version is served with (inference_code/ on the managed image).
        self.serving_image = ServingImage(self, "ServingImage")
        raw_bucket = data.import_bucket(self, "raw", data.data_key)
        processed_bucket = data.import_bucket(self, "processed", data.data_key)
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
            monitoring=env_config.monitoring,
        )
        self.ingestion = FeatureIngestionPipeline(
            self,
            "FeatureIngestion",
            pipeline_name=f"{project}-{env_config.name}-ingest-features",
            feature_group_name=data.feature_store.group_name,
            settings=env_config.training,
            feature_store=env_config.feature_store,
            code=self.pipeline.code,
            raw_bucket=raw_bucket,
            raw_prefix=RAW_PREFIX,
            processed_bucket=processed_bucket,
            data_key=data.data_key,
            vpc=network.vpc,
            subnets=network.selected_subnets,
            security_group=network.job_security_group,
        )
        self.triggers = RetrainingTriggers(
            self,
            "RetrainingTriggers",
            pipeline_arn=self.pipeline.pipeline_arn,
            pipeline_name=name,
            schedule=env_config.training.schedule,
            timezone=env_config.training.schedule_timezone,
            raw_bucket_name=data.bucket_name("raw"),
            raw_prefix=RAW_PREFIX,
            ingestion_pipeline_arn=self.ingestion.pipeline_arn,
        )
        self.triggers.node.add_dependency(self.pipeline.pipeline, self.ingestion.pipeline)
        self.add_stack_dependency(data)
        CfnOutput(self, "PipelineName", value=name)
        CfnOutput(self, "FeatureIngestionPipelineName", value=self.ingestion.pipeline_name)
