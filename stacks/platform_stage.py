"""One environment of the platform (dev, staging or prod) as a CDK Stage."""

from __future__ import annotations

from aws_cdk import Aspects, Environment, Stage, Tags
from constructs import Construct

from config import EnvironmentConfig, PlatformConfig
from platform_constructs.model_deployer import SmokeTestAccess, smoke_runner_role_arn, smoke_test_role_name
from platform_constructs.model_promotion import PromotedObjects, intake_role_name
from policy.cdk_providers import AcceptCdkProviderFindings
from stacks.data_stack import DataStack
from stacks.deployment_stack import DeploymentStack
from stacks.monitoring_stack import MonitoringStack
from stacks.network_stack import NetworkStack
from stacks.operations_stack import OperationsStack
from stacks.serving_stack import ServingStack
from stacks.training_stack import TrainingStack


class PlatformStage(Stage):
    """All stacks of one environment, deployed to that environment's account and region."""

    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig, env_config: EnvironmentConfig) -> None:
        super().__init__(scope, id_, env=Environment(account=env_config.account, region=env_config.region))
        prefix = f"{config.project}-{env_config.name}"
        protect = env_config.retain_data

        self.data = DataStack(
            self,
            "Data",
            env_config=env_config,
            project=config.project,
            stack_name=f"{prefix}-data",
            description=f"ML platform {env_config.name}: KMS keys, S3 buckets, model registry (stateful)",
            termination_protection=protect,
        )
        self.network = NetworkStack(
            self,
            "Network",
            env_config=env_config,
            logs_key=self.data.logs_key,
            stack_name=f"{prefix}-network",
            description=f"ML platform {env_config.name}: isolated VPC, endpoints, flow logs, security groups",
            termination_protection=protect,
        )

        self.operations = OperationsStack(
            self,
            "Operations",
            env_config=env_config,
            data=self.data,
            stack_name=f"{prefix}-operations",
            description=f"ML platform {env_config.name}: alarm topic and its subscribers",
            termination_protection=protect,
        )

        self.training = TrainingStack(
            self,
            "Training",
            env_config=env_config,
            project=config.project,
            data=self.data,
            network=self.network.network,
            alerts=self.operations.alerts,
            stack_name=f"{prefix}-training",
            description=f"ML platform {env_config.name}: SageMaker training pipeline, job roles, retraining triggers",
            termination_protection=protect,
        )

        self.deployment = self._deployment_stack(config, env_config, prefix, protect)

        self.serving = ServingStack(
            self,
            "Serving",
            env_config=env_config,
            project=config.project,
            data=self.data,
            network=self.network.network,
            alerts=self.operations.alerts,
            stack_name=f"{prefix}-serving",
            description=f"ML platform {env_config.name}: endpoint for approved models, alarms, batch scoring",
            termination_protection=protect,
        )

        self.serving.add_stack_dependency(self.deployment)  # its parameters read the deployment's SSM parameters
        self._smoke_test_access(config, env_config)
        # Model monitoring (issue 8): where the endpoint captures requests, i.e. not dev's serverless one.
        self.monitoring: MonitoringStack | None = None
        if env_config.monitoring.enabled:
            self.monitoring = MonitoringStack(
                self,
                "Monitoring",
                env_config=env_config,
                project=config.project,
                data=self.data,
                network=self.network.network,
                alerts=self.operations.alerts,
                stack_name=f"{prefix}-monitoring",
                description=f"ML platform {env_config.name}: model monitoring ({env_config.monitoring.backend} "
                "backend), alarms, retraining on drift, dashboard",
                termination_protection=protect,
            )
            # The native schedules name the endpoint; retraining starts the training pipeline.
            self.monitoring.add_stack_dependency(self.serving)
            self.monitoring.add_stack_dependency(self.training)

        for key, value in sorted(config.tags.items()):
            Tags.of(self).add(key, value)
        Tags.of(self).add("Environment", env_config.name)
        Aspects.of(self).add(AcceptCdkProviderFindings())

    def _deployment_stack(
        self, config: PlatformConfig, env_config: EnvironmentConfig, prefix: str, protect: bool
    ) -> DeploymentStack:
        """The model deployer, and this environment's end of model promotion ([promotion] in config)."""
        promotion = config.promotion
        source = target = None
        if promotion is not None and promotion.promotes_models:
            if env_config.name == promotion.promote_models_to:
                source = config.environment(promotion.promote_models_from)
            if env_config.name == promotion.promote_models_from:
                target = config.environment(promotion.promote_models_to)
        deployment = DeploymentStack(
            self,
            "Deployment",
            env_config=env_config,
            project=config.project,
            data=self.data,
            network=self.network.network,
            alerts=self.operations.alerts,
            model_source=source,
            model_target=target,
            stack_name=f"{prefix}-deployment",
            description=f"ML platform {env_config.name}: model deployer, approved-model parameters, promotion",
            termination_protection=protect,
        )
        if target is not None:
            # The receiving environment's intake may read this environment's approved versions.
            self.data.share_models_with(
                account=target.account,
                principal_arn=f"arn:{self.data.partition}:iam::{target.account}:role/"
                + intake_role_name(config.project, target.name),
                object_patterns=PromotedObjects(config.project, env_config.name).source_patterns,
            )
        return deployment

    def _smoke_test_access(self, config: PlatformConfig, env_config: EnvironmentConfig) -> None:
        """The role the delivery pipeline's smoke test assumes, where the pipeline deploys this environment."""
        promotion = config.promotion
        if promotion is None or env_config.name not in promotion.environments:
            return
        pipelines = [
            *([self.training.pipeline.pipeline_name] if self.training.pipeline is not None else []),
            self.training.ingestion.pipeline_name,
            str(self.serving.batch.pipeline.pipeline_name),
        ]
        SmokeTestAccess(
            self.deployment,
            "SmokeTestAccess",
            role_name=smoke_test_role_name(config.project, env_config.name),
            runner_role_arn=smoke_runner_role_arn(
                config.project, env_config.name, config.tooling.account, self.deployment.partition
            ),
            tooling_account=config.tooling.account,
            pipelines=pipelines,
            feature_group=self.data.feature_store.group_name,
            endpoint_name=self.deployment.deployer.endpoint_name,
            parameter_arns=self.deployment.deployer.parameter_arns,
        )
