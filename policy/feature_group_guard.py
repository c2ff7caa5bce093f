"""Refuse, at synth, a feature-group change that CloudFormation could only make by replacing the group.

Replacing a feature group drops its online store. CloudFormation replaces an
``AWS::SageMaker::FeatureGroup`` when one of its create-only properties changes (the list below is
the resource schema's ``createOnlyProperties``; a test compares it with the schema cfn-lint ships),
and Feature Store itself can only *add* features, never remove or retype one. Since the group has a
fixed name, CloudFormation cannot even replace it in place: the update would fail halfway.

``config/feature_groups.lock.json`` records, per environment, those properties as last accepted
(``make feature-group-lock`` writes it). At synth, :class:`FeatureGroupGuard` compares every
feature group of the templates with its lock entry:

- an added feature, a new TTL or throughput: fine (updated in place);
- a create-only property or a feature changed under the same name: refused, always;
- a new name (``feature_store.group_version`` bumped): a replacement, refused unless
  ``feature_store.allow_replacement = true`` for that environment.

A test checks that the lock matches what synthesizes, so an accepted change is also a reviewed diff.
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

from policy.ml_platform_rules import value_at

LOCK_PATH = Path(__file__).resolve().parent.parent / "config" / "feature_groups.lock.json"
LOCK_METADATA_KEY = "ml-platform:feature-group-lock"  # set by platform_constructs.feature_store
RULE_ID = "FeatureGroupReplacement"
CREATE_ONLY_PROPERTIES = (
    "FeatureGroupName",
    "RecordIdentifierFeatureName",
    "EventTimeFeatureName",
    "OnlineStoreConfig.SecurityConfig",
    "OnlineStoreConfig.EnableOnlineStore",
    "OnlineStoreConfig.StorageType",
    "OfflineStoreConfig",
    "RoleArn",
    "Description",
    "Tags",
)
FEATURES = "FeatureDefinitions"


def identity(properties: Mapping[str, Any]) -> dict[str, Any]:
    """What must not change in place: the create-only properties and every feature's type."""
    result: dict[str, Any] = {path: value_at(properties, path) for path in CREATE_ONLY_PROPERTIES}
    result[FEATURES] = {item["FeatureName"]: item["FeatureType"] for item in properties.get(FEATURES) or []}
    return result


def feature_groups(template: Mapping[str, Any]) -> Iterator[tuple[str, str, bool, dict[str, Any]]]:
    """(logical ID, lock key, replacement allowed, identity) of every guarded feature group."""
    for logical_id, resource in sorted((template.get("Resources") or {}).items()):
        if resource.get("Type") != "AWS::SageMaker::FeatureGroup":
            continue
        lock = (resource.get("Metadata") or {}).get(LOCK_METADATA_KEY)
        if lock:
            yield logical_id, lock["lock"], bool(lock["allowReplacement"]), identity(resource.get("Properties") or {})


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if value is not None else "(not set)"


def replacement_problems(
    key: str, locked: Mapping[str, Any] | None, current: Mapping[str, Any], *, allow: bool
) -> list[str]:
    """Why the change from ``locked`` to ``current`` cannot deploy safely; empty when it can."""
    if locked is None:
        return []  # a feature group the lock does not know yet: created, nothing replaced
    changes = [
        f"{path} {_show(locked.get(path))} -> {_show(current.get(path))}"
        for path in CREATE_ONLY_PROPERTIES
        if locked.get(path) != current.get(path)
    ]
    old, new = locked.get(FEATURES) or {}, current.get(FEATURES) or {}
    changes += [f"feature {name} removed" for name in old if name not in new]
    changes += [f"feature {name} {old[name]} -> {new[name]}" for name in old if name in new and old[name] != new[name]]
    if not changes:
        return []
    env = key.split("/")[0]
    old_name, new_name = locked.get("FeatureGroupName"), current.get("FeatureGroupName")
    if old_name == new_name:
        in_place = (
            f"feature group {new_name} ({key}): {'; '.join(changes)}. This cannot change in place: CloudFormation "
            "would have to replace the feature group (dropping its online store), which it cannot do while the "
            "name stays, and Feature Store never removes or retypes a feature. Revert the change, or create a "
            "new feature group: bump feature_store.group_version and set feature_store.allow_replacement = true "
            f"for {env} in config/environments.toml, run `make feature-group-lock`, then backfill it with the "
            "feature-ingestion pipeline."
        )
        return [in_place]
    if not allow:
        replacement = (
            f"feature group {old_name} -> {new_name} ({key}) replaces the feature group: {'; '.join(changes)}. "
            "The new group starts empty and the old one stops being served. Set feature_store.allow_replacement "
            f"= true for {env} in config/environments.toml to confirm, then run `make feature-group-lock`."
        )
        return [replacement]
    return []


def load_lock(path: Path = LOCK_PATH) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {key: value for key, value in data.items() if not key.startswith("_")}


@jsii.implements(IPolicyValidationPlugin)
class FeatureGroupGuard:
    """A CDK validation plugin: a feature-group replacement nobody allowed fails synth."""

    def __init__(self, lock_path: Path = LOCK_PATH) -> None:
        self._lock_path = lock_path

    @property
    def name(self) -> str:
        return "FeatureGroupGuard"

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
            for logical_id, key, allow, current in feature_groups(template):
                for problem in replacement_problems(key, lock.get(key), current, allow=allow):
                    violations.append(
                        PolicyViolation(
                            rule_name=RULE_ID,
                            description=problem,
                            fix="Revert the change, or bump feature_store.group_version with allow_replacement = true.",
                            severity="error",
                            violating_resources=[
                                PolicyViolatingResource(
                                    resource_logical_id=logical_id,
                                    template_path=template_path,
                                    locations=["Properties"],
                                )
                            ],
                        )
                    )
        return PolicyValidationPluginReport(success=not violations, violations=violations)
