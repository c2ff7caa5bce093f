"""The deny guardrails every SageMaker role of the platform carries."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from platform_constructs.sagemaker_guardrails import (
    ENCRYPTED_TRAFFIC_ACTIONS,
    OUTPUT_KEY_ACTIONS,
    VOLUME_KEY_ACTIONS,
    VPC_ACTIONS,
    SageMakerGuardrails,
)


def guardrail_statements(**kwargs: Any) -> dict[str, dict[str, Any]]:
    stack = Stack(App(), "Test")
    key = kms.Key(stack, "Key")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    SageMakerGuardrails(stack, "Guardrails", volume_keys=[key], output_keys=[key], **kwargs).attach_to(role)
    template = Template.from_stack(stack).to_json()
    (policy,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    assert policy["Properties"]["Roles"] == [{"Ref": next(k for k in template["Resources"] if k.startswith("Role"))}]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_every_statement_denies() -> None:
    statements = guardrail_statements()
    assert {s["Effect"] for s in statements.values()} == {"Deny"}
    assert {s["Resource"] for s in statements.values()} == {"*"}


def test_jobs_and_models_must_run_in_the_vpc() -> None:
    statements = guardrail_statements()
    assert statements["DenyJobsOutsideVpcSubnets"]["Condition"] == {"Null": {"sagemaker:VpcSubnets": "true"}}
    assert statements["DenyJobsWithoutSecurityGroups"]["Condition"] == {
        "Null": {"sagemaker:VpcSecurityGroupIds": "true"}
    }
    assert set(statements["DenyJobsOutsideVpcSubnets"]["Action"]) == set(VPC_ACTIONS)
    assert "sagemaker:CreateModel" in VPC_ACTIONS


def test_network_isolation_off_or_unset_is_denied() -> None:
    statements = guardrail_statements()
    assert statements["DenyNetworkIsolationOff"]["Condition"] == {"Bool": {"sagemaker:NetworkIsolation": "false"}}
    assert statements["DenyNetworkIsolationUnset"]["Condition"] == {"Null": {"sagemaker:NetworkIsolation": "true"}}
    assert "sagemaker:CreateProcessingJob" in statements["DenyNetworkIsolationOff"]["Action"]


def test_processing_may_reach_aws_apis_when_asked() -> None:
    statements = guardrail_statements(isolate_processing=False)
    assert "sagemaker:CreateProcessingJob" not in statements["DenyNetworkIsolationOff"]["Action"]
    assert "sagemaker:CreateTrainingJob" in statements["DenyNetworkIsolationOff"]["Action"]
    # ... but it still runs in the VPC with encrypted traffic and platform keys.
    assert "sagemaker:CreateProcessingJob" in statements["DenyJobsOutsideVpcSubnets"]["Action"]
    assert "sagemaker:CreateProcessingJob" in statements["DenyVolumeKeyUnset"]["Action"]


def test_inter_container_encryption_and_keys_are_enforced() -> None:
    statements = guardrail_statements()
    assert set(statements["DenyInterContainerEncryptionOff"]["Action"]) == set(ENCRYPTED_TRAFFIC_ACTIONS)
    assert set(statements["DenyVolumeKeyUnset"]["Action"]) == set(VOLUME_KEY_ACTIONS)
    assert set(statements["DenyOutputKeyUnset"]["Action"]) == set(OUTPUT_KEY_ACTIONS)
    foreign = statements["DenyForeignVolumeKey"]["Condition"]["ArnNotEquals"]["sagemaker:VolumeKmsKey"]
    assert foreign == [{"Fn::GetAtt": ["Key961B73FD", "Arn"]}]
    assert statements["DenySchedulesWithoutJobDefinition"]["Condition"] == {
        "Null": {"sagemaker:ModelMonitorJobDefinitionName": "true"}
    }


def test_guardrails_need_keys() -> None:
    with pytest.raises(ValueError, match="at least one volume key"):
        SageMakerGuardrails(Stack(App(), "Test"), "Guardrails", volume_keys=[], output_keys=[])
