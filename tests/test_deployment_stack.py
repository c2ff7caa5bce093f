"""Approved models reach their endpoint by rule, and staging's model is offered to prod: the templates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config import PlatformConfig
from tests.conftest import Synthesized, resources_of_type

pytestmark = pytest.mark.slow
ENVS = ["dev", "staging", "prod"]


def statements(template: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The statements of the managed policies whose logical ID starts with ``prefix``."""
    found = []
    for logical_id, policy in resources_of_type(template, "AWS::IAM::ManagedPolicy").items():
        if logical_id.startswith(prefix):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    assert found, prefix
    return found


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def allowing(found: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in found if action in actions_of(s)]


def resolve(value: Any) -> Any:
    """A CloudFormation value with Fn::Join flattened and the partition written out."""
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, dict):
        if value == {"Ref": "AWS::Partition"}:
            return "aws"
        if set(value) == {"Fn::Join"}:
            separator, parts = value["Fn::Join"]
            return separator.join(str(resolve(p)) for p in parts)
        return {k: resolve(v) for k, v in value.items()}
    return value


def text(value: Any) -> str:
    return json.dumps(resolve(value))


def rule(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    (found,) = [r for k, r in resources_of_type(template, "AWS::Events::Rule").items() if k.startswith(prefix)]
    return found


@pytest.mark.parametrize("env", ENVS)
def test_an_approval_of_the_environments_group_starts_its_deployer(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    account = platform_config.environment(env).account
    template = synthesized.template(env, "Deployment")
    approval = rule(template, "ModelDeployerApprovalRule")["Properties"]
    assert approval["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "account": [account],
        "detail": {"ModelPackageGroupName": [f"churn-{env}"], "ModelApprovalStatus": ["Approved"]},
    }
    stack = rule(template, "ModelDeployerServingStackRule")["Properties"]["EventPattern"]
    assert stack["detail-type"] == ["CloudFormation Stack Status Change"]
    assert "UPDATE_ROLLBACK_COMPLETE" in stack["detail"]["status-details"]["status"]
    assert f":{account}:stack/churn-{env}-serving/" in text(stack["detail"]["stack-id"])
    functions = resources_of_type(template, "AWS::Lambda::Function")
    deployer = next(k for k, f in functions.items() if f["Properties"]["Handler"] == "model_deployer.handler")
    for found in (approval, rule(template, "ModelDeployerServingStackRule")["Properties"]):
        assert [t["Arn"] for t in found["Targets"]] == [{"Fn::GetAtt": [deployer, "Arn"]}]


@pytest.mark.parametrize("env", ENVS)
def test_the_deployer_may_update_only_its_serving_stack_with_the_rollout_role(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    account = platform_config.environment(env).account
    found = statements(synthesized.template(env, "Deployment"), "ModelDeployerFunctionRole")
    (update,) = allowing(found, "cloudformation:UpdateStack")
    assert resolve(update["Resource"]) == f"arn:aws:cloudformation:eu-west-1:{account}:stack/churn-{env}-serving/*"
    rollout = f"arn:aws:iam::{account}:role/churn-{env}-serving-rollout"
    # Only with the rollout role, and only with the template already deployed (no new template).
    assert set(update["Condition"]) == {"StringEquals", "Null"}
    assert update["Condition"]["Null"] == {"cloudformation:TemplateUrl": "true"}
    assert resolve(update["Condition"]["StringEquals"]["cloudformation:RoleArn"]) == rollout
    (pass_role,) = allowing(found, "iam:PassRole")
    assert resolve(pass_role["Resource"]) == rollout
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
    (put,) = allowing(found, "ssm:PutParameter")
    serving = platform_config.environment(env).serving
    variants = [v.name for v in serving.variants] + (["Shadow"] if serving.shadow_variant else [])
    resources = resolve(put["Resource"])
    assert sorted([resources] if isinstance(resources, str) else resources) == sorted(
        f"arn:aws:ssm:eu-west-1:{account}:parameter/churn-{env}-{v}-model-package" for v in variants
    )
    (read,) = allowing(found, "sagemaker:DescribeModelPackage")
    assert resolve(read["Resource"]) == f"arn:aws:sagemaker:eu-west-1:{account}:model-package/churn-{env}/*"
    # It changes no SageMaker resource itself: CloudFormation does, with the rollout role.
    changes = {a for s in found for a in actions_of(s) if a.startswith("sagemaker:") and "Describe" not in a}
    assert changes == set()


@pytest.mark.parametrize("env", ENVS)
def test_the_rollout_role_reaches_only_this_environments_endpoint(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    account = platform_config.environment(env).account
    template = synthesized.template(env, "Serving")
    (role,) = [r for k, r in resources_of_type(template, "AWS::IAM::Role").items() if k.startswith("RolloutRole")]
    assert role["Properties"]["RoleName"] == f"churn-{env}-serving-rollout"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    found = statements(template, "RolloutRole")
    (update,) = allowing(found, "sagemaker:UpdateEndpoint")
    assert resolve(update["Resource"]) == f"arn:aws:sagemaker:eu-west-1:{account}:endpoint/churn-{env}"
    (pass_model_role,) = [s for s in allowing(found, "iam:PassRole") if "sagemaker" in text(s.get("Condition"))]
    assert pass_model_role["Resource"]["Fn::GetAtt"][0].startswith("ModelRole")
    (packages,) = allowing(found, "sagemaker:DescribeModelPackage")
    assert resolve(packages["Resource"]) == f"arn:aws:sagemaker:eu-west-1:{account}:model-package/churn-{env}/*"
    assert not [s for s in found if s["Resource"] == "*" and any(a.startswith("sagemaker:") for a in actions_of(s))]


def test_staging_offers_its_approved_models_to_prod_and_nothing_more(
    synthesized: Synthesized, platform_config: PlatformConfig
) -> None:
    staging, prod = platform_config.environment("staging"), platform_config.environment("prod")
    intake = f"arn:aws:iam::{prod.account}:role/churn-prod-model-intake"
    deployment = synthesized.template("staging", "Deployment")
    forward = rule(deployment, "ModelForwardingRule")["Properties"]
    assert forward["EventPattern"]["detail"] == {
        "ModelPackageGroupName": ["churn-staging"],
        "ModelApprovalStatus": ["Approved"],
    }
    prod_bus = f"arn:aws:events:{prod.region}:{prod.account}:event-bus/default"
    (target,) = forward["Targets"]
    assert prod_bus in text(target["Arn"])
    (put_events,) = statements(deployment, "ModelForwardingRole")
    assert prod_bus in text(put_events["Resource"])

    data = synthesized.template("staging", "Data")
    (group,) = resources_of_type(data, "AWS::SageMaker::ModelPackageGroup").values()
    (grant,) = group["Properties"]["ModelPackageGroupPolicy"]["Statement"]
    assert f":iam::{prod.account}:root" in text(grant["Principal"])
    assert intake in text(grant["Condition"])
    assert sorted(grant["Action"]) == [
        "sagemaker:DescribeModelPackage",
        "sagemaker:DescribeModelPackageGroup",
        "sagemaker:ListModelPackages",
    ]
    readable = []
    for policy in resources_of_type(data, "AWS::S3::BucketPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == "ModelIntakeReads":
                assert intake in text(statement["Condition"])
                assert actions_of(statement) == ["s3:GetObject"]
                readable.append(text(statement["Resource"]))
    assert len(readable) == 3
    assert any("/output/model.tar.gz" in r for r in readable)
    assert any("/evaluation/*" in r for r in readable)
    assert any("baselines/churn-staging-training/*" in r for r in readable)
    for key in resources_of_type(data, "AWS::KMS::Key").values():
        grants = [
            s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid") == "ModelIntakeDecryptsThroughS3"
        ]
        for statement in grants:
            assert statement["Condition"]["StringEquals"] == {"kms:ViaService": f"s3.{staging.region}.amazonaws.com"}
            assert actions_of(statement) == ["kms:Decrypt"]


def test_prod_accepts_staging_approvals_and_copies_them_into_its_own_registry(
    synthesized: Synthesized, platform_config: PlatformConfig
) -> None:
    staging, prod = platform_config.environment("staging"), platform_config.environment("prod")
    deployment = synthesized.template("prod", "Deployment")
    (bus_policy,) = resources_of_type(deployment, "AWS::Events::EventBusPolicy").values()
    statement = bus_policy["Properties"]["Statement"]
    assert f":iam::{staging.account}:root" in text(statement["Principal"])
    assert statement["Condition"] == {
        "StringEquals": {"events:source": "aws.sagemaker", "events:detail-type": "SageMaker Model Package State Change"}
    }
    assert rule(deployment, "ModelIntakeRule")["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "account": [staging.account],
        "detail": {"ModelPackageGroupName": ["churn-staging"], "ModelApprovalStatus": ["Approved"]},
    }
    roles = resources_of_type(deployment, "AWS::IAM::Role")
    assert "churn-prod-model-intake" in [r["Properties"].get("RoleName") for r in roles.values()]
    found = statements(deployment, "ModelIntakeFunctionRole")
    (register,) = allowing(found, "sagemaker:CreateModelPackage")
    assert f":{prod.account}:model-package/churn-prod/*" in text(register["Resource"])
    (cross,) = [s for s in allowing(found, "sagemaker:DescribeModelPackage") if staging.account in text(s)]
    assert resolve(cross["Resource"]) == f"arn:aws:sagemaker:eu-west-1:{staging.account}:model-package/churn-staging/*"
    writes = allowing(found, "s3:PutObject")
    assert writes
    assert all("/promoted/churn-staging/*" in text(s["Resource"]) for s in writes)
    (reads,) = [s for s in allowing(found, "s3:GetObject") if "churn-staging-" in text(s["Resource"])]
    assert "pipelines/churn-staging-training/*/output/model.tar.gz" in text(reads["Resource"])
    # Prod's S3 gateway endpoint admits exactly those objects of staging's buckets.
    gateways = [
        e
        for e in resources_of_type(synthesized.template("prod", "Network"), "AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    ]
    (gateway,) = gateways
    (promoted,) = [
        s for s in gateway["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "PromotedModelsOfTheSource"
    ]
    assert promoted["Condition"]["StringEquals"]["s3:ResourceAccount"] == staging.account
    assert text(promoted["Resource"]) == text(reads["Resource"])


def test_dev_neither_forwards_nor_receives_models(synthesized: Synthesized) -> None:
    deployment = synthesized.template("dev", "Deployment")
    assert resources_of_type(deployment, "AWS::Events::EventBusPolicy") == {}
    handlers = [f["Properties"]["Handler"] for f in resources_of_type(deployment, "AWS::Lambda::Function").values()]
    assert handlers == ["model_deployer.handler"]
    assert len(resources_of_type(deployment, "AWS::Events::Rule")) == 2


@pytest.mark.parametrize("env", ENVS)
def test_the_smoke_test_role_trusts_only_the_pipelines_smoke_step(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    tooling = platform_config.tooling.account
    roles = resources_of_type(synthesized.template(env, "Deployment"), "AWS::IAM::Role").values()
    (role,) = [r for r in roles if r["Properties"].get("RoleName") == f"churn-{env}-smoke-test"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert f":iam::{tooling}:root" in text(trust["Principal"])
    assert list(trust["Condition"]) == ["ArnEquals"]
    assert resolve(trust["Condition"]["ArnEquals"]["aws:PrincipalArn"]) == (
        f"arn:aws:iam::{tooling}:role/churn-delivery-smoke-{env}"
    )


def test_prod_trains_nothing_but_keeps_its_serving_image_and_ingestion(
    synthesized: Synthesized, platform_config: PlatformConfig
) -> None:
    assert not platform_config.environment("prod").training.enabled
    template = synthesized.template("prod", "Training")
    names = [p["Properties"]["PipelineName"] for p in resources_of_type(template, "AWS::SageMaker::Pipeline").values()]
    assert names == ["churn-prod-ingest-features"]
    assert resources_of_type(template, "AWS::Scheduler::Schedule") == {}
    # What remains is the batch starter: raw batches are still ingested once, in order; it starts no training.
    (starter_id,) = [
        k
        for k, f in resources_of_type(template, "AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == "batch_starter.handler"
    ]
    starter = template["Resources"][starter_id]
    assert starter["Properties"]["Environment"]["Variables"]["TRAINING_PIPELINE"] == ""
    for rule_id, rule in resources_of_type(template, "AWS::Events::Rule").items():
        targets = rule["Properties"]["Targets"]
        assert [t["Arn"] for t in targets] == [{"Fn::GetAtt": [starter_id, "Arn"]}], rule_id
    # The serving image is still published to prod: promoted packages are served with prod's copy of it.
    template_path = synthesized.template_paths["Prod/Training"]
    assets = json.loads(
        template_path.with_name(template_path.name.replace(".template.json", ".assets.json")).read_text()
    )
    assert len(assets["dockerImages"]) == 1


def test_the_serving_stack_deploys_after_the_parameters_it_reads(synthesized: Synthesized) -> None:
    for stage in ("Dev", "Staging", "Prod"):
        manifest = json.loads((synthesized.outdir / f"assembly-{stage}" / "manifest.json").read_text())
        serving = next(
            a
            for k, a in manifest["artifacts"].items()
            if k.startswith(f"{stage}Serving") and a["type"] == "aws:cloudformation:stack"
        )
        assert any(d.startswith(f"{stage}Deployment") for d in serving["dependencies"]), serving["dependencies"]
