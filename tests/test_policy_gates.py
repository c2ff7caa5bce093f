"""The policy gates fail when they should: four cdk-nag packs plus the project's own rules.

`synthesized` (conftest) synthesizes every environment with all packs registered, so an
unacknowledged finding anywhere fails every test that uses it. The tests here prove the packs are
live (canaries), that every acknowledgment is narrow, reasoned and still needed, and that the
README's table of accepted findings is the real one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aws_cdk import App, Stack, Stage
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker

from app import create_app
from policy.acknowledge import CFN_LINT_REASONS_KEY, MIN_REASON_LENGTH, acknowledge
from policy.audit import AuditResult, accepted_findings_table
from policy.packs import NAG_PACKS
from tests.conftest import ROOT, Synthesized

README = ROOT / "README.md"


def bad_app(tmp_path: Path, *, acknowledged: bool) -> App:
    """A deliberately non-compliant stack: a bare bucket, a wildcard role and an unisolated model."""
    app = create_app(outdir=str(tmp_path))
    stack = Stack(Stage(app, "Canary"), "Bad")
    s3.Bucket(stack, "BareBucket")
    role = iam.Role(stack, "WildRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    model = sagemaker.CfnModel(
        stack,
        "OpenModel",
        execution_role_arn=role.role_arn,
        primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(image="image"),
    )
    if acknowledged:
        for rule in ("MlPlatform-ModelNetworkIsolation", "MlPlatform-ModelInVpc"):
            acknowledge(model, rule, "canary: this model is deliberately open for the test")
    return app


def synth_error(app: App) -> str:
    with pytest.raises(Exception) as caught:  # noqa: PT011  (jsii raises a plain Exception)
        app.synth()
    return str(caught.value)


def test_every_pack_fires_on_a_bad_construct(tmp_path: Path) -> None:
    message = synth_error(bad_app(tmp_path, acknowledged=False))
    for prefix in NAG_PACKS:
        assert re.search(rf"Acknowledge with '{re.escape(prefix)}::{re.escape(prefix)}-\w+", message), prefix
    assert "Acknowledge with 'AwsSolutions::AwsSolutions-S1'" in message  # bucket without access logs
    assert "AwsSolutions-IAM5" in message  # s3:* on *
    assert "MlPlatform-ModelNetworkIsolation" in message
    assert "MlPlatform-ModelInVpc" in message


def test_an_acknowledgment_silences_exactly_its_finding(tmp_path: Path) -> None:
    message = synth_error(bad_app(tmp_path, acknowledged=True))
    assert "MlPlatform-ModelNetworkIsolation" not in message
    assert "MlPlatform-ModelInVpc" not in message
    assert "AwsSolutions-S1" in message  # the bucket's findings are untouched


def test_acknowledgment_without_a_reason_is_refused() -> None:
    stack = Stack()
    with pytest.raises(ValueError, match="write at least 20 characters"):
        acknowledge(stack, "AwsSolutions-S1", "because")
    with pytest.raises(ValueError, match="not a bare or granular rule ID"):
        acknowledge(stack, "S1", "a long enough reason that says nothing")


def test_synth_of_every_environment_passes_all_gates(synthesized: Synthesized) -> None:
    reports = synthesized.report["pluginReports"]
    assert all(report["conclusion"] == "success" for report in reports), reports
    assert [v for report in reports for v in report["violations"]] == []


def test_no_finding_is_left_unacknowledged(audited: AuditResult) -> None:
    assert audited.unacknowledged() == []


def test_each_acknowledgment_matches_exactly_one_real_finding(audited: AuditResult) -> None:
    assert audited.acknowledgments, "expected the accepted findings of the README table"
    for ack in audited.acknowledgments:
        covered = audited.covered_by(ack)
        assert len(covered) == 1, f"{ack.rule_id} on {ack.path} covers {len(covered)} findings: {covered}"
        # The narrowest construct: the resource itself or the L2 construct that owns it.
        assert covered[0].path in (ack.path, f"{ack.path}/Resource"), (ack, covered[0])


def test_every_reason_explains_itself(audited: AuditResult, synthesized: Synthesized) -> None:
    reasons = [ack.reason for ack in audited.acknowledgments]
    for template in synthesized.templates.values():
        for resource in template["Resources"].values():
            metadata = resource.get("Metadata", {})
            reasons += [skip["comment"] for skip in metadata.get("checkov", {}).get("skip", [])]
            lint_ignored = metadata.get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
            lint_reasons = metadata.get(CFN_LINT_REASONS_KEY, {})
            assert sorted(lint_reasons) == sorted(lint_ignored), resource
            reasons += list(lint_reasons.values())
    assert reasons
    short = [r for r in reasons if len(r.strip()) < MIN_REASON_LENGTH]
    assert short == []


def test_readme_lists_the_accepted_findings(audited: AuditResult) -> None:
    table = accepted_findings_table(audited)
    assert table in README.read_text(), (
        "README's table of accepted findings is out of date; regenerate it with "
        "`make accepted-findings` and review the change:\n" + table
    )
