"""Refuse, at synth, an endpoint change SageMaker refuses while a variant is registered for autoscaling.

SageMaker Developer Guide, "Update endpoints that use auto scaling": "If the update would change the
instance type for any model that is a target for auto scaling, the update fails." The same holds for
removing a production variant configured for auto scaling: both need the variant deregistered from
Application Auto Scaling first. CloudFormation cannot order that inside one deployment (it updates the
endpoint before it deletes the scalable target), so the deploy would fail halfway and roll back.

``config/endpoint_variants.lock.json`` records, per endpoint, the variants registered with Application
Auto Scaling and their instance types, as last deployed (``make endpoint-variant-lock`` writes it from
what synthesizes). At synth, :class:`EndpointVariantGuard` compares every endpoint config with its
lock entry: a locked variant that disappears or changes instance type is refused, with the way
through (turn autoscaling off for one deploy, change, turn it on again). Weights, models, new
variants and instance counts are free: SageMaker allows them on a registered variant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    IPolicyValidationContext,
    IPolicyValidationPlugin,
    PolicyValidationPluginReport,
    PolicyViolatingResource,
    PolicyViolation,
)

LOCK_PATH = Path(__file__).resolve().parent.parent / "config" / "endpoint_variants.lock.json"
VARIANT_LOCK_METADATA_KEY = "ml-platform:endpoint-variant-lock"  # set by platform_constructs.model_endpoint
RULE_ID = "AutoscaledVariantChange"
SOURCE_SENTENCE = (
    "If the update would change the instance type for any model that is a target for auto scaling, the update fails."
)


def endpoint_configs(template: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, str], dict[str, str]]]:
    """(logical ID, lock key, autoscaled variants -> instance type, every variant -> instance type) of
    every guarded endpoint config of ``template``."""
    for logical_id, resource in sorted((template.get("Resources") or {}).items()):
        if resource.get("Type") != "AWS::SageMaker::EndpointConfig":
            continue
        lock = (resource.get("Metadata") or {}).get(VARIANT_LOCK_METADATA_KEY)
        if not lock:
            continue
        properties = resource.get("Properties") or {}
        variants = {
            str(v.get("VariantName")): str(v.get("InstanceType") or "serverless")
            for field in ("ProductionVariants", "ShadowProductionVariants")
            for v in properties.get(field) or []
        }
        yield logical_id, str(lock["lock"]), dict(lock.get("autoscaled") or {}), variants


def change_problems(key: str, locked: Mapping[str, str] | None, variants: Mapping[str, str]) -> list[str]:
    """Why the endpoint ``key`` cannot move from the ``locked`` autoscaled variants to ``variants``."""
    changes = []
    for name, instance_type in sorted((locked or {}).items()):
        if name not in variants:
            changes.append(f"variant {name} ({instance_type}) is removed")
        elif variants[name] != instance_type:
            changes.append(f"variant {name} changes instance type {instance_type} -> {variants[name]}")
    if not changes:
        return []
    return [
        (
            f"endpoint {key}: {'; '.join(changes)}, while the variant is registered with Application Auto Scaling. "
            f'SageMaker refuses that change ("{SOURCE_SENTENCE}"; removing a registered variant likewise), and '
            "CloudFormation would change the endpoint before deleting the scalable target. The way through, in "
            "three deploys of the serving stack: (1) set serving.autoscaling = false for this environment in "
            "config/environments.toml, deploy (the scalable targets are deregistered), run `make "
            "endpoint-variant-lock`; (2) make the change, deploy, run `make endpoint-variant-lock`; (3) set "
            "serving.autoscaling = true, deploy, run `make endpoint-variant-lock`. Raise min_capacity first if the "
            "endpoint must not scale in while autoscaling is off."
        )
    ]


def load_lock(path: Path = LOCK_PATH) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {key: dict(value) for key, value in data.items() if not key.startswith("_")}


@jsii.implements(IPolicyValidationPlugin)
class EndpointVariantGuard:
    """A CDK validation plugin: a change to an autoscaled variant that SageMaker would refuse fails synth."""

    def __init__(self, lock_path: Path = LOCK_PATH) -> None:
        self._lock_path = lock_path

    @property
    def name(self) -> str:
        return "EndpointVariantGuard"

    @property
    def version(self) -> str:
        return "1.0.0"

    @property
    def rule_ids(self) -> list[str]:
        return [RULE_ID]

    def validate(self, context: IPolicyValidationContext) -> PolicyValidationPluginReport:
        lock = load_lock(self._lock_path)
        violations = []
        for template_path in context.template_paths:
            template = json.loads(Path(template_path).read_text())
            for logical_id, key, _autoscaled, variants in endpoint_configs(template):
                for problem in change_problems(key, lock.get(key), variants):
                    violations.append(
                        PolicyViolation(
                            rule_name=RULE_ID,
                            description=problem,
                            fix="Deregister the variant first: one deploy with serving.autoscaling = false.",
                            severity="error",
                            violating_resources=[
                                PolicyViolatingResource(
                                    resource_logical_id=logical_id,
                                    template_path=template_path,
                                    locations=["Properties.ProductionVariants"],
                                )
                            ],
                        )
                    )
        return PolicyValidationPluginReport(success=not violations, violations=violations)
