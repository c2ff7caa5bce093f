"""Serving of one environment: the endpoint for approved model packages and batch scoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnCondition, CfnOutput, CfnParameter, DefaultStackSynthesizer, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.batch_scoring import BatchScoringPipeline
from platform_constructs.execution_role import ServiceRole
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.model_endpoint import SHADOW, ModelEndpoint
from platform_constructs.model_registry import registry_arns
from platform_constructs.sagemaker_guardrails import SageMakerGuardrails
from platform_constructs.sagemaker_network_policy import SageMakerNetworkPolicy
from stacks.data_stack import DataStack

# The value of a model package parameter when there is no approved model yet (a valid model name,
# so that template validation passes, and never a real package's ARN).
NO_MODEL = "none"
PREFIX_REASON = (
    "The endpoint writes captured requests and async results under keys it generates per request; the "
    "endpoint's prefix is the unit of access."
)


class ServingStack(Stack):
    """The endpoint serves the model packages given as deploy-time parameters
    (``<Variant>ModelPackageArn``); with no champion package, only the roles, topics and the batch
    scoring pipeline deploy. A model package is never looked up at synth."""

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
        settings = env_config.serving
        endpoint_name = f"{project}-{env_config.name}"
        group = data.model_registry.group_name
        _, versions_arn = registry_arns(self, group)

        packages = self._model_package_parameters(settings.variants, settings.shadow_variant, group)
        first_variant = packages[settings.variants[0].name]
        has_model = CfnCondition(
            self, "HasApprovedModel", expression=Fn.condition_not(Fn.condition_equals(first_variant, NO_MODEL))
        )

        models_bucket = data.import_bucket(self, "models", data.model_key)
        capture_bucket = data.import_bucket(self, "capture", data.data_key)
        guardrails = SageMakerGuardrails(
            self,
            "Guardrails",
            volume_keys=[data.data_key, data.model_key],
            output_keys=[data.data_key, data.model_key],
            instance_types=env_config.allowed_instance_types,
            serverless_endpoints=settings.inference_type == "serverless",
        )
        network_policy = SageMakerNetworkPolicy(
            self,
            "ModelNetworkPolicy",
            vpc=network.vpc,
            subnets=network.selected_subnets,
            security_group=network.inference_security_group,
            log_path="/aws/sagemaker/Endpoints/*",
        )
        self.model_role = ServiceRole(
            self,
            "ModelRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker models of {endpoint_name}: model data, serving image, capture",
            managed_policies=[network_policy],
        )
        guardrails.attach_to(self.model_role.role)
        role = self.model_role
        role.read_objects(
            models_bucket,
            "pipelines/",
            reason="Model versions live under keys the training "
            "pipeline generates per execution; the pipeline's prefix is the unit of access.",
        )
        role.write_objects(capture_bucket, f"{endpoint_name}/", reason=PREFIX_REASON)
        repository = (
            f"arn:{self.partition}:ecr:{self.region}:{self.account}:repository/"
            f"cdk-{DefaultStackSynthesizer.DEFAULT_QUALIFIER}-container-assets-{self.account}-{self.region}"
        )
        role.allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"], [repository])
        role.allow(
            ["ecr:GetAuthorizationToken"],
            ["*"],
            wildcard_reason="ECR's GetAuthorizationToken has no resource; image pulls are limited to the CDK "
            "image-asset repository by the statement above.",
        )

        alarm_topic = alerts.topic
        async_topics = None
        if settings.inference_type == "async":
            async_topics = (
                sns.Topic(self, "AsyncSuccessTopic", master_key=data.data_key, enforce_ssl=True),
                sns.Topic(self, "AsyncErrorTopic", master_key=data.data_key, enforce_ssl=True),
            )
            role.allow(["sns:Publish"], [t.topic_arn for t in async_topics])
            role.use_key(data.data_key, encrypt=True)

        self.endpoint = ModelEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            settings=settings,
            model_packages=packages,
            execution_role=role.role,
            subnet_ids=network.selected_subnets.subnet_ids,
            security_group_ids=[network.inference_security_group.security_group_id],
            model_key=data.model_key,
            data_key=data.data_key,
            capture_uri=f"s3://{capture_bucket.bucket_name}/{endpoint_name}/capture",
            async_output_uri=f"s3://{capture_bucket.bucket_name}/{endpoint_name}/async",
            alarm_topic=alarm_topic,
            async_topics=async_topics,
            condition=has_model,
            logs_key=data.logs_key,
            log_retention_days=env_config.operations.log_retention_days,
            retain=env_config.retain_data,
        )
        self.endpoint.node.add_dependency(role.policy)

        processed_bucket = data.import_bucket(self, "processed", data.data_key)
        self.batch = BatchScoringPipeline(
            self,
            "BatchScoring",
            pipeline_name=f"{endpoint_name}-batch-scoring",
            model_role=role,
            guardrails=guardrails,
            model_package_versions_arn=versions_arn,
            default_input_uri=f"s3://{processed_bucket.bucket_name}/batch-scoring/input/",
            output_uri=f"s3://{processed_bucket.bucket_name}/batch-scoring/output",
            instance_type=settings.transform_instance_type,
            allowed_instance_types=env_config.allowed_instance_types,
            data_key=data.data_key,
            subnet_ids=network.selected_subnets.subnet_ids,
            security_group_ids=[network.inference_security_group.security_group_id],
        )
        role.read_objects(processed_bucket, "batch-scoring/input/", reason=PREFIX_REASON)
        role.write_objects(processed_bucket, "batch-scoring/output/", reason=PREFIX_REASON)

        self.add_stack_dependency(data)
        endpoint_output = CfnOutput(self, "EndpointName", value=endpoint_name)
        endpoint_output.condition = has_model
        CfnOutput(self, "BatchScoringPipelineName", value=f"{endpoint_name}-batch-scoring")

    def _model_package_parameters(self, variants: Any, shadow: bool, group: str) -> dict[str, str]:
        """One deploy-time parameter per variant; variants after the first default to the first's package."""
        pattern = (
            f"^{NO_MODEL}$|^arn:{self.partition}:sagemaker:{self.region}:{self.account}:model-package/{group}/[0-9]+$"
        )
        names = [v.name for v in variants] + ([SHADOW] if shadow else [])
        packages: dict[str, str] = {}
        first: str | None = None
        for name in names:
            parameter = CfnParameter(
                self,
                f"{name}ModelPackageArn",
                type="String",
                default=NO_MODEL,
                allowed_pattern=pattern,
                constraint_description=f"an approved version of {group} in this account and region "
                f"(arn:...:model-package/{group}/<version>), or {NO_MODEL}",
                description=f"Model package version the {name} variant serves"
                + (f" ({NO_MODEL}: no endpoint yet)" if first is None else f" ({NO_MODEL}: the same as {names[0]})"),
            )
            value = parameter.value_as_string
            if first is None:
                first = value
                packages[name] = value
            else:
                use_first = CfnCondition(
                    self, f"{name}UsesFirstPackage", expression=Fn.condition_equals(value, NO_MODEL)
                )
                packages[name] = Fn.condition_if(use_first.logical_id, first, value).to_string()
        return packages
