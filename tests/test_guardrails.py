"""The deny guardrails every SageMaker role of the platform carries."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from config.sagemaker_api import LOCAL_STORAGE_PATTERNS
from platform_constructs.sagemaker_guardrails import (
    ENCRYPTED_TRAFFIC_ACTIONS,
    INSTANCE_JOB_ACTIONS,
    INSTANCE_TYPE_ACTIONS,
    OUTPUT_KEY_ACTIONS,
    VOLUME_KEY_ACTIONS,
    VPC_ACTIONS,
    SageMakerGuardrails,
)
from tests.iam_eval import denies


def guardrail_statements(**kwargs: Any) -> dict[str, dict[str, Any]]:
    stack = Stack(App(), "Test")
    key = kms.Key(stack, "Key")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    SageMakerGuardrails(stack, "Guardrails", volume_keys=[key], output_keys=[key], **kwargs).attach_to(role)
    template = Template.from_stack(stack).to_json()
    policies = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    assert len(policies) == 2  # the guardrails and their storage and instance-type half (size limit)
    role_ref = {"Ref": next(k for k in template["Resources"] if k.startswith("Role"))}
    assert all(policy["Properties"]["Roles"] == [role_ref] for policy in policies)
    return {s["Sid"]: s for policy in policies for s in policy["Properties"]["PolicyDocument"]["Statement"]}


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
    # A negated operator is true for an absent key: only a key that is there and foreign is denied.
    assert statements["DenyForeignVolumeKey"]["Condition"]["Null"] == {"sagemaker:VolumeKmsKey": "false"}
    assert statements["DenySchedulesWithoutJobDefinition"]["Condition"] == {
        "Null": {"sagemaker:ModelMonitorJobDefinitionName": "true"}
    }


def test_guardrails_need_keys() -> None:
    with pytest.raises(ValueError, match="at least one volume key"):
        SageMakerGuardrails(Stack(App(), "Test"), "Guardrails", volume_keys=[], output_keys=[])


KEY = {"Fn::GetAtt": ["Key961B73FD", "Arn"]}


def _request(instance_types: list[str] | None, volume_key: object = KEY) -> dict[str, object]:
    """A training request that satisfies every guardrail except, perhaps, key and instance type."""
    request: dict[str, object] = {
        "sagemaker:VpcSubnets": ["subnet-1", "subnet-2"],
        "sagemaker:VpcSecurityGroupIds": ["sg-1"],
        "sagemaker:NetworkIsolation": True,
        "sagemaker:InterContainerTrafficEncryption": True,
        "sagemaker:OutputKmsKey": KEY,
    }
    if volume_key is not None:
        request["sagemaker:VolumeKmsKey"] = volume_key
    if instance_types is not None:
        request["sagemaker:InstanceTypes"] = instance_types
    return request


def _denied(statements: dict[str, dict[str, Any]], action: str, request: dict[str, object]) -> list[str]:
    return sorted(sid for sid, statement in statements.items() if denies(statement, action, request))


@pytest.mark.parametrize(
    ("instance_types", "volume_key", "denied_by"),
    [
        (["ml.m5.xlarge"], KEY, []),
        (["ml.m5.xlarge"], None, ["DenyVolumeKeyUnset"]),  # an EBS volume must carry the platform key
        (["ml.g5.2xlarge"], None, []),  # local NVMe storage: no key (SageMaker refuses one), allowed
        (["ml.g5.2xlarge", "ml.m5.xlarge"], None, ["DenyVolumeKeyUnset"]),  # one EBS instance is enough to deny
        (["ml.m5.xlarge"], "arn:aws:kms:eu-west-1:111111111111:key/other", ["DenyForeignVolumeKey"]),
        (["ml.p5.48xlarge"], None, ["DenyInstanceTypesNotAllowed"]),  # not in the allowed list
        (["ml.g5.2xlarge", "ml.p5.48xlarge"], None, ["DenyInstanceTypesNotAllowed"]),
        (None, KEY, ["DenyInstanceTypesUnset"]),  # ForAnyValue is false for an absent key: the Null check
    ],
)
def test_volume_key_and_instance_type_limits(
    instance_types: list[str] | None, volume_key: object, denied_by: list[str]
) -> None:
    statements = guardrail_statements(instance_types=["ml.m5.*", "ml.g5.2xlarge"])
    for action in ("sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob"):
        assert _denied(statements, action, _request(instance_types, volume_key)) == denied_by, action


def test_instance_type_limits_cover_every_create_call_that_launches_instances() -> None:
    statements = guardrail_statements(instance_types=["ml.m5.*"])
    assert set(statements["DenyInstanceTypesNotAllowed"]["Action"]) == set(INSTANCE_TYPE_ACTIONS)
    assert set(INSTANCE_TYPE_ACTIONS) == {
        "sagemaker:CreateTrainingJob",
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:CreateProcessingJob",
        "sagemaker:CreateTransformJob",
        "sagemaker:CreateEndpointConfig",
    }
    assert statements["DenyInstanceTypesNotAllowed"]["Condition"] == {
        "ForAnyValue:StringNotLike": {"sagemaker:InstanceTypes": ["ml.m5.*"]}
    }
    assert set(statements["DenyInstanceTypesUnset"]["Action"]) == set(INSTANCE_TYPE_ACTIONS)
    assert statements["DenyVolumeKeyUnset"]["Condition"]["ForAnyValue:StringNotLike"] == {
        "sagemaker:InstanceTypes": list(LOCAL_STORAGE_PATTERNS)
    }


def test_serverless_endpoint_configs_need_no_instance_type() -> None:
    statements = guardrail_statements(instance_types=["ml.m5.*"], serverless_endpoints=True)
    assert set(statements["DenyInstanceTypesUnset"]["Action"]) == set(INSTANCE_JOB_ACTIONS)
    serverless_config: dict[str, object] = {"sagemaker:VpcSubnets": None}  # no instance types, no volume key
    assert _denied(statements, "sagemaker:CreateEndpointConfig", serverless_config) == []
    assert _denied(statements, "sagemaker:CreateTransformJob", _request(None)) == ["DenyInstanceTypesUnset"]


def test_without_an_allowed_list_there_is_no_instance_type_limit() -> None:
    statements = guardrail_statements()
    assert not [sid for sid in statements if sid.startswith("DenyInstanceTypes")]
