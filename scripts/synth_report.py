"""Synthesize every environment offline and summarize resources, policy and scanner status per stack."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import Validations
from constructs import IConstruct

from app import TOOLING_STAGE_ID, build_app, stage_id
from config import PlatformConfig
from policy.audit import pack_of
from policy.ml_platform_rules import PACK_NAME
from policy.packs import NAG_PACKS
from policy.scanners import cfn_lint, checkov

_NAMESPACE_SEPARATOR = "::"
OUR_PACKS = (*NAG_PACKS, PACK_NAME)


@dataclass
class StackRow:
    environment: str
    stack: str
    resources: int
    accepted: int
    lint_problems: list[str] = field(default_factory=list)
    checkov_failed: list[str] = field(default_factory=list)


@dataclass
class SynthReport:
    rows: list[StackRow]
    accepted_by_pack: Counter[str]
    checkov_passed: int
    checkov_skipped: int
    synth_seconds: float
    scan_seconds: float

    @property
    def ok(self) -> bool:
        return all(not row.lint_problems and not row.checkov_failed for row in self.rows)


def acknowledgments_by_path(root: IConstruct) -> dict[str, list[str]]:
    """Acknowledged rule IDs by construct path, read back from CDK's own metadata."""
    found: dict[str, list[str]] = {}
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule in entry.data:
                    rule_id = rule.partition(_NAMESPACE_SEPARATOR)[2]  # "Annotation::AwsSolutions-S1"
                    if pack_of(rule_id) in OUR_PACKS:  # not CDK's own acknowledgments of its validator
                        found.setdefault(construct.node.path, []).append(rule_id)
    return found


def synth_and_scan(config: PlatformConfig, outdir: Path) -> SynthReport:
    """Synthesize every environment into ``outdir`` (policy packs are the gate), then lint and scan.

    Raises when a policy pack finds an unacknowledged problem: synth itself fails, with the report.
    """
    started = time.perf_counter()
    app = build_app(config, config.environment_names, outdir=str(outdir))
    assembly = app.synth()
    synth_seconds = time.perf_counter() - started

    started = time.perf_counter()
    acknowledged = acknowledgments_by_path(app)
    regions = {stage_id(env.name): env.region for env in config.environments}
    regions[TOOLING_STAGE_ID] = config.tooling.region
    rows = []
    order = {stage_id(name): index for index, name in enumerate(config.environment_names)}
    order[TOOLING_STAGE_ID] = len(order)  # the delivery pipeline, after the environments
    artifacts = sorted(assembly.stacks_recursively, key=lambda a: (order[a.hierarchical_id.split("/")[0]], a.id))
    for artifact in artifacts:
        stage, stack = artifact.hierarchical_id.split("/")
        rows.append(
            StackRow(
                environment=stage.lower(),
                stack=stack,
                resources=len(artifact.template["Resources"]),
                accepted=sum(
                    len(rules) for path, rules in acknowledged.items() if path.startswith(f"{stage}/{stack}/")
                ),
                lint_problems=cfn_lint([(Path(artifact.template_full_path), regions[stage])]),
            )
        )
    scan = checkov(outdir)
    for row in rows:
        row.checkov_failed = [f for f in scan.failed if f"{stage_id(row.environment)}{row.stack}" in f]
    accepted_by_pack = Counter(pack_of(rule) for rules in acknowledged.values() for rule in rules)
    return SynthReport(
        rows=rows,
        accepted_by_pack=accepted_by_pack,
        checkov_passed=scan.passed,
        checkov_skipped=len(scan.skipped),
        synth_seconds=synth_seconds,
        scan_seconds=time.perf_counter() - started,
    )


def format_report(report: SynthReport) -> str:
    header = f"{'Environment':<12} {'Stack':<10} {'Resources':>9}  {'Policy packs':<28} {'cfn-lint':<10} {'checkov':<8}"
    lines = [header, "-" * len(header)]
    for row in report.rows:
        policy = f"pass ({row.accepted} accepted)"
        lint = "pass" if not row.lint_problems else f"{len(row.lint_problems)} problems"
        scan = "pass" if not row.checkov_failed else f"{len(row.checkov_failed)} failed"
        lines.append(f"{row.environment:<12} {row.stack:<10} {row.resources:>9}  {policy:<28} {lint:<10} {scan:<8}")
    packs = ", ".join(f"{pack} {report.accepted_by_pack[pack]}" for pack in OUR_PACKS)
    lines += [
        "",
        (
            "Policy packs: AwsSolutions, HIPAA.Security, NIST.800.53.R5, PCI.DSS.321 (cdk-nag) and MlPlatform: "
            "0 unacknowledged findings."
        ),
        f"Accepted findings by pack (all environments): {packs or 'none'} (reasons: README, 'Accepted findings').",
        f"checkov: {report.checkov_passed} passed, 0 failed, {report.checkov_skipped} skipped with a reason."
        if report.ok
        else "checkov or cfn-lint reported problems: see above.",
        (
            f"Synth of {len({r.environment for r in report.rows} - {TOOLING_STAGE_ID.lower()})} environments "
            f"and the delivery pipeline: {report.synth_seconds:.1f} s; "
            f"cfn-lint and checkov: {report.scan_seconds:.1f} s."
        ),
    ]
    for row in report.rows:
        for problem in row.lint_problems + row.checkov_failed:
            lines.append(f"  {row.environment}/{row.stack}: {problem}")
    return "\n".join(lines)
