"""Every policy finding of an app, accepted or not, every acknowledgment and every scanner skip.

Build the app with ``policy.acknowledge.AUDIT_CONTEXT_KEY`` set and without policy packs, synthesize
it, then call :func:`audit`. The result lets tests prove that each acknowledgment matches a real
finding on exactly one resource (no stale or blanket acknowledgments), and lets the README's table
of accepted findings be generated instead of written by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import CfnResource, Stack
from aws_cdk.cx_api import CloudAssembly
from constructs import IConstruct

from policy.acknowledge import AUDIT_METADATA_KEY, CFN_LINT_REASONS_KEY
from policy.ml_platform_rules import check_stage, check_template
from policy.packs import NAG_PACKS
from policy.sagemaker_api_rules import check_template as check_api_template


@dataclass(frozen=True, order=True)
class Acknowledged:
    rule_id: str
    path: str  # construct path the acknowledgment sits on
    reason: str

    @property
    def pack(self) -> str:
        return pack_of(self.rule_id)

    def covers(self, finding: Finding) -> bool:
        return finding.rule_id == self.rule_id and (
            finding.path == self.path or finding.path.startswith(self.path + "/")
        )


@dataclass(frozen=True, order=True)
class Finding:
    rule_id: str
    path: str  # construct path of the violating CfnResource


@dataclass(frozen=True, order=True)
class Skipped:
    """A checkov check or cfn-lint rule skipped on one resource through template metadata."""

    rule_id: str  # "checkov:CKV_AWS_18", "cfn-lint:W3010"
    path: str
    reason: str


@dataclass(frozen=True)
class AuditResult:
    acknowledgments: tuple[Acknowledged, ...]
    findings: tuple[Finding, ...]
    skips: tuple[Skipped, ...]

    def covered_by(self, acknowledgment: Acknowledged) -> list[Finding]:
        return [f for f in self.findings if acknowledgment.covers(f)]

    def unacknowledged(self) -> list[Finding]:
        return [f for f in self.findings if not any(a.covers(f) for a in self.acknowledgments)]


def pack_of(rule_id: str) -> str:
    """``AwsSolutions-IAM5[Resource::*]`` -> ``AwsSolutions``; ``HIPAA.Security-S3...`` -> ``HIPAA.Security``."""
    return rule_id.split("[")[0].rsplit("-", 1)[0]


def recorded_acknowledgments(root: IConstruct) -> list[Acknowledged]:
    found = []
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == AUDIT_METADATA_KEY:
                found.append(Acknowledged(entry.data["id"], construct.node.path, entry.data["reason"]))
    return sorted(found)


def _nag_findings(root: IConstruct) -> Iterable[Finding]:
    for pack in NAG_PACKS.values():
        report = pack().validate_scope(root)
        for violation in report.violations:
            for resource in violation.violating_resources:
                yield Finding(violation.rule_name, resource.construct_path or "?")


def _resource_paths(root: IConstruct) -> dict[tuple[str, str], str]:
    """Construct path of every CfnResource, by (stack artifact id, logical ID)."""
    paths: dict[tuple[str, str], str] = {}
    for construct in root.node.find_all():
        if isinstance(construct, CfnResource):
            stack = Stack.of(construct)
            paths[(stack.artifact_id, stack.resolve(construct.logical_id))] = construct.node.path
    return paths


def _templates(assembly: CloudAssembly) -> Iterable[tuple[str, dict[str, Any]]]:
    for artifact in assembly.stacks_recursively:
        yield artifact.id, json.loads(Path(artifact.template_full_path).read_text())


def _template_skips(template: dict[str, Any]) -> Iterable[tuple[str, str, str]]:
    for logical_id, resource in template["Resources"].items():
        metadata = resource.get("Metadata", {})
        for skip in metadata.get("checkov", {}).get("skip", []):
            yield logical_id, f"checkov:{skip['id']}", skip["comment"]
        for rule_id, reason in metadata.get(CFN_LINT_REASONS_KEY, {}).items():
            yield logical_id, f"cfn-lint:{rule_id}", reason


def audit(root: IConstruct, assembly: CloudAssembly) -> AuditResult:
    """Findings of the four cdk-nag packs and the MlPlatform and SageMakerApi rules, acknowledgments and
    scanner skips."""
    paths = _resource_paths(root)
    findings = set(_nag_findings(root))
    skips = set()
    stages: dict[str, dict[str, dict[str, Any]]] = {}
    for artifact_id, template in _templates(assembly):
        stages.setdefault(_stage_of(assembly, artifact_id), {})[artifact_id] = template
        for own in [*check_template(template), *check_api_template(template)]:
            findings.add(Finding(own.rule_id, paths.get((artifact_id, own.logical_id), own.logical_id)))
        for logical_id, rule_id, reason in _template_skips(template):
            skips.add(Skipped(rule_id, paths.get((artifact_id, logical_id), logical_id), reason))
    for templates in stages.values():
        for artifact_id, own in check_stage(templates):
            findings.add(Finding(own.rule_id, paths.get((artifact_id, own.logical_id), own.logical_id)))
    return AuditResult(tuple(recorded_acknowledgments(root)), tuple(sorted(findings)), tuple(sorted(skips)))


def _stage_of(assembly: CloudAssembly, artifact_id: str) -> str:
    """The stage (environment) a stack belongs to, from its hierarchical ID ("Prod/Serving" -> "Prod")."""
    for artifact in assembly.stacks_recursively:
        if artifact.id == artifact_id:
            return str(artifact.hierarchical_id).split("/", 1)[0]
    return ""


def accepted_findings_table(result: AuditResult) -> str:
    """The README's table of accepted findings; a row merges the rules and places that share a reason
    and the same environments."""
    accepted: list[Acknowledged | Skipped] = [*result.acknowledgments, *result.skips]
    stages_of: dict[tuple[str, str, str], set[str]] = {}
    for item in accepted:
        stage, _, place = item.path.partition("/")
        stages_of.setdefault((item.reason, item.rule_id, place), set()).add(stage.lower())
    places_of: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for (reason, rule_id, place), stage_set in stages_of.items():
        places_of.setdefault((reason, rule_id, tuple(sorted(stage_set))), []).append(place)
    rows: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for (reason, rule_id, stages), place_list in places_of.items():
        rows.setdefault((reason, tuple(sorted(place_list)), stages), []).append(rule_id)
    lines = ["| Findings | Where | Environments | Reason |", "|---|---|---|---|"]
    for (reason, places, stages), rule_ids in sorted(rows.items(), key=lambda row: (sorted(row[1]), row[0][1])):
        findings = "<br>".join(f"`{rule_id}`" for rule_id in sorted(rule_ids))
        where = "<br>".join(f"`{place}`" for place in places)
        lines.append(f"| {findings} | {where} | {', '.join(stages)} | {reason} |")
    return "\n".join(lines)
