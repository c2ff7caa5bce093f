"""One environment of the platform (dev, staging or prod) as a CDK Stage."""

from __future__ import annotations

from aws_cdk import Aspects, Environment, Stage, Tags
from constructs import Construct

from config import EnvironmentConfig, PlatformConfig
from policy.cdk_providers import AcceptCdkProviderFindings
from stacks.data_stack import DataStack
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
            stack_name=f"{prefix}-training",
            description=f"ML platform {env_config.name}: SageMaker training pipeline, job roles, retraining triggers",
            termination_protection=protect,
        )

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
