"""Model monitoring of one environment's endpoint: the backend, alarms, actions and dashboard."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.model_endpoint import SHADOW
from platform_constructs.model_monitoring import ModelMonitoring
from policy.acknowledge import acknowledge
from stacks.data_stack import DataStack


def ground_truth_uri(capture_bucket_name: str, endpoint_name: str) -> str:
    """Where labels go (monitoring_code/CONTRACT.md, "ground_truth.py"): Model Monitor's ground-truth JSON
    lines, partitioned by the hour the labels were collected."""
    return f"s3://{capture_bucket_name}/{endpoint_name}/ground-truth/"


class MonitoringStack(Stack):
    """The endpoint ``<project>-<env>`` is watched per variant by the configured backend
    (``[environments.monitoring]``); the alarms, the retraining rule and the dashboard exist from the
    first deploy, whether or not a model is deployed. ``GroundTruthWriterPolicyArn`` is the managed
    policy to attach to whoever uploads labels."""

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
        settings = env_config.monitoring
        endpoint_name = f"{project}-{env_config.name}"
        serving = env_config.serving
        variants = [v.name for v in serving.variants] + ([SHADOW] if serving.shadow_variant else [])
        capture_bucket = data.import_bucket(self, "capture", data.data_key)
        labels_uri = ground_truth_uri(capture_bucket.bucket_name, endpoint_name)
        self.monitoring = ModelMonitoring(
            self,
            "ModelMonitoring",
            endpoint_name=endpoint_name,
            pipeline_name=f"{project}-{env_config.name}-monitoring",
            variants=variants,
            settings=settings,
            training_pipeline_name=f"{project}-{env_config.name}-training" if env_config.training.enabled else None,
            capture_bucket=capture_bucket,
            monitoring_bucket=data.import_bucket(self, "monitoring", data.data_key),
            models_bucket=data.import_bucket(self, "models", data.model_key),
            data_key=data.data_key,
            logs_key=data.logs_key,
            model_key=data.model_key,
            model_package_group_name=data.model_registry.group_name,
            ground_truth_uri=labels_uri,
            vpc=network.vpc,
            subnets=network.selected_subnets,
            job_security_group=network.job_security_group,
            function_security_group=network.function_security_group,
            alerts=alerts,
            log_retention_days=env_config.operations.log_retention_days,
            retain=env_config.retain_data,
            allowed_instance_types=env_config.allowed_instance_types,
        )

        # Whoever uploads labels (an operator's role, a labelling job) gets this policy: write the ground
        # truth prefix, and list the capture to report labels that match no captured request.
        self.ground_truth_writer = iam.ManagedPolicy(
            self,
            "GroundTruthWriter",
            description=f"Upload ground truth for {endpoint_name} to {labels_uri} (monitoring_code/ground_truth.py)",
            statements=[
                iam.PolicyStatement(
                    actions=["s3:PutObject"],
                    resources=[capture_bucket.arn_for_objects(f"{endpoint_name}/ground-truth/*")],
                ),
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[capture_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{endpoint_name}/*"]}},
                ),
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[capture_bucket.arn_for_objects(f"{endpoint_name}/capture/*")]
                ),
                iam.PolicyStatement(
                    actions=["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"], resources=[data.data_key.key_arn]
                ),
            ],
        )
        for prefix in ("ground-truth", "capture"):
            acknowledge(
                self.ground_truth_writer,
                f"AwsSolutions-IAM5[Resource::{capture_bucket.bucket_arn}/{endpoint_name}/{prefix}/*]",
                "Label files are named by the hour they were collected and captured requests by the hour they "
                "were served; the endpoint's ground-truth (write) and capture (read, to match ids) prefixes are "
                "the unit of access.",
            )

        self.add_stack_dependency(data)
        CfnOutput(self, "GroundTruthUri", value=labels_uri)
        CfnOutput(self, "GroundTruthWriterPolicyArn", value=self.ground_truth_writer.managed_policy_arn)
        CfnOutput(self, "MonitoringDashboardName", value=f"{endpoint_name}-monitoring")
        if self.monitoring.pipeline is not None:
            CfnOutput(self, "MonitoringPipelineName", value=self.monitoring.pipeline.pipeline_name)
