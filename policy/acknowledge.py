"""The only ways this project accepts a policy finding: on one construct, for one rule, with a reason.

- :func:`acknowledge`: a cdk-nag or MlPlatform finding (CDK's ``Validations.acknowledge``);
- :func:`skip_checkov`: a checkov check, as template metadata checkov reads;
- :func:`ignore_cfn_lint`: a cfn-lint rule, as template metadata cfn-lint reads.

cdk-nag v3 accepts an empty reason, so these helpers refuse reasons that explain nothing, and
``tests/test_policy_gates.py`` checks every accepted finding of every environment again.
"""

from __future__ import annotations

import re

from aws_cdk import Acknowledgment, CfnResource, Validations
from constructs import IConstruct

from policy.ml_platform_rules import PACK_NAME

# The project's own template-rule packs (policy/ml_platform_rules.py, policy/sagemaker_api_rules.py).
OWN_PACKS = (PACK_NAME, "SageMakerApi")

MIN_REASON_LENGTH = 20
# With this context key set (`cdk synth -c ml-platform:audit-acknowledgments=true`) acknowledgments are
# recorded under AUDIT_METADATA_KEY instead of applied, so every finding shows, accepted or not.
AUDIT_CONTEXT_KEY = "ml-platform:audit-acknowledgments"
AUDIT_METADATA_KEY = "ml-platform:acknowledgment"
# cfn-lint's own metadata has no place for a reason; it is kept under this key beside it.
CFN_LINT_REASONS_KEY = "cfn-lint-reasons"
_RULE_ID = re.compile(r"^[A-Za-z0-9.]+-[A-Za-z0-9]+(\[.+\])?$")


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Accept the finding ``rule_id`` on ``construct`` (and only its children).

    ``rule_id`` is the bare rule ID (``AwsSolutions-S1``) or a granular one
    (``AwsSolutions-IAM5[Resource::*]``); ``reason`` says why the finding is acceptable here.
    """
    if not _RULE_ID.match(rule_id):
        raise ValueError(
            f"acknowledgment rule id {rule_id!r} is not a bare or granular rule ID such as "
            "'AwsSolutions-S1' or 'AwsSolutions-IAM5[Resource::*]'"
        )
    _check_reason(rule_id, construct, reason)
    if construct.node.try_get_context(AUDIT_CONTEXT_KEY) in (True, "true"):
        construct.node.add_metadata(AUDIT_METADATA_KEY, {"id": rule_id, "reason": reason})
        return
    # CDK files findings of plain validation plugins under the plugin's name; cdk-nag packs match
    # bare rule IDs themselves.
    own_pack = next((pack for pack in OWN_PACKS if rule_id.startswith(f"{pack}-")), None)
    namespaced = f"{own_pack}::{rule_id}" if own_pack else rule_id
    Validations.of(construct).acknowledge(Acknowledgment(id=namespaced, reason=reason))


def acknowledge_all(construct: IConstruct, rule_ids: tuple[str, ...], reason: str) -> None:
    """Accept several rule IDs that report the same fact (one per compliance pack) with one reason."""
    for rule_id in rule_ids:
        acknowledge(construct, rule_id, reason)


def skip_checkov(resource: CfnResource, check_id: str, reason: str) -> None:
    """Skip one checkov check on one resource, with the reason written into the template."""
    _check_reason(check_id, resource, reason)
    metadata = resource.get_metadata("checkov") or {"skip": []}
    skips = [entry for entry in metadata["skip"] if entry["id"] != check_id]
    resource.add_metadata("checkov", {"skip": [*skips, {"id": check_id, "comment": reason}]})


def ignore_cfn_lint(resource: CfnResource, rule_id: str, reason: str) -> None:
    """Ignore one cfn-lint rule on one resource; the reason goes next to it in the metadata."""
    _check_reason(rule_id, resource, reason)
    config = resource.get_metadata("cfn-lint") or {"config": {"ignore_checks": []}}
    checks = sorted({*config["config"]["ignore_checks"], rule_id})
    resource.add_metadata("cfn-lint", {"config": {"ignore_checks": checks}})
    reasons = dict(resource.get_metadata(CFN_LINT_REASONS_KEY) or {})
    reasons[rule_id] = reason
    resource.add_metadata(CFN_LINT_REASONS_KEY, reasons)


def _check_reason(finding: str, construct: IConstruct, reason: str) -> None:
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(
            f"accepting {finding} on {construct.node.path} with reason {reason!r}: "
            f"write at least {MIN_REASON_LENGTH} characters that say why the finding is acceptable"
        )
