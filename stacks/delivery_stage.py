"""The tooling account's stage: the delivery pipeline that deploys every environment in order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Aspects, Environment, Stack, Stage, Tags
from constructs import Construct

from config import PlatformConfig
from platform_constructs.delivery_pipeline import DeliveryPipeline
from policy.cdk_providers import AcceptCdkProviderFindings


class DeliveryStack(Stack):
    """The CDK Pipelines pipeline (``<project>-delivery``), its artifact bucket and key, and the roles of
    its smoke-test steps."""

    def __init__(
        self, scope: Construct, id_: str, *, config: PlatformConfig, stages: Mapping[str, Stage], **kwargs: Any
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        promotion = config.promotion
        if promotion is None:
            raise ValueError("the delivery stack needs [promotion] in config")
        self.pipeline = DeliveryPipeline(
            self,
            "DeliveryPipeline",
            project=config.project,
            promotion=promotion,
            environments=[(config.environment(name), stages[name]) for name in promotion.environments],
        )


class ToolingStage(Stage):
    """The tooling account and region of config ([tooling])."""

    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig, stages: Mapping[str, Stage]) -> None:
        super().__init__(scope, id_, env=Environment(account=config.tooling.account, region=config.tooling.region))
        self.delivery = DeliveryStack(
            self,
            "Pipeline",
            config=config,
            stages=stages,
            stack_name=f"{config.project}-delivery",
            description="ML platform: delivery pipeline (dev -> staging -> approval -> prod) with smoke tests",
            termination_protection=True,
        )
        for key, value in sorted(config.tags.items()):
            Tags.of(self).add(key, value)
        Tags.of(self).add("Environment", "tooling")
        Aspects.of(self).add(AcceptCdkProviderFindings())
