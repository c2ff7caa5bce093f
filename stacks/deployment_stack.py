"""How models reach this environment's endpoint, and how the delivery pipeline checks it."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.model_deployer import ModelDeployer
from platform_constructs.model_promotion import ModelForwarding, ModelIntake
from stacks.data_stack import DataStack


class DeploymentStack(Stack):
    """The model deployer with the variants' SSM parameters and its rules (every environment), and the
    two ends of model promotion: forwarding approvals where models are promoted from (``model_target``
    given), the intake where they are promoted to (``model_source`` given).

    It deploys before the Serving stack, whose parameters read the SSM parameters created here.
    """

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
        model_source: EnvironmentConfig | None = None,
        model_target: EnvironmentConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        group = data.model_registry.group_name
        self.deployer = ModelDeployer(
            self,
            "ModelDeployer",
            project=project,
            env_name=env_config.name,
            serving=env_config.serving,
            model_package_group=group,
            network=network,
            key=data.logs_key,
            alarm_topic=alerts.topic,
            log_retention_days=env_config.operations.log_retention_days,
            retain=env_config.retain_data,
        )
        self.forwarding = (
            ModelForwarding(self, "ModelForwarding", model_package_group=group, target=model_target)
            if model_target is not None
            else None
        )
        self.intake = (
            ModelIntake(
                self,
                "ModelIntake",
                project=project,
                env_config=env_config,
                source=model_source,
                model_package_group=group,
                bucket_names={purpose: data.bucket_name(purpose) for purpose in ("models", "processed", "monitoring")},
                model_key=data.model_key,
                data_key=data.data_key,
                network=network,
                key=data.logs_key,
                alarm_topic=alerts.topic,
            )
            if model_source is not None
            else None
        )
        self.add_stack_dependency(data)
        for variant, name in self.deployer.parameter_names.items():
            CfnOutput(self, f"{variant}ModelPackageParameter", value=name)
