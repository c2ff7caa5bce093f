"""The delivery pipeline: dev, staging, a manual approval, prod, in that order, each smoke-tested, each
deployed with its own account's bootstrap roles."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from app import build_app
from config import PlatformConfig, parse_config
from config.settings import DEFAULT_CONFIG_PATH
from tests.conftest import ROOT, Synthesized, resources_of_type
from tests.test_deployment_stack import resolve

pytestmark = pytest.mark.slow


def pipeline(template: dict[str, Any]) -> dict[str, Any]:
    (found,) = resources_of_type(template, "AWS::CodePipeline::Pipeline").values()
    return dict(found["Properties"])


def build_spec(template: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
    project = template["Resources"][action["Configuration"]["ProjectName"]["Ref"]]
    spec = resolve(project["Properties"]["Source"]["BuildSpec"])
    return dict(json.loads(spec))


def stage(properties: dict[str, Any], name: str) -> list[dict[str, Any]]:
    (found,) = [s for s in properties["Stages"] if s["Name"] == name]
    return sorted(found["Actions"], key=lambda a: (a["RunOrder"], a["Name"]))


def test_dev_then_staging_then_an_approval_then_prod(synthesized: Synthesized) -> None:
    properties = pipeline(synthesized.templates["Tooling/Pipeline"])
    assert properties["Name"] == "churn-delivery"
    assert [s["Name"] for s in properties["Stages"]] == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "Dev",
        "Staging",
        "ApproveProd",
        "Prod",
    ]
    (approval,) = stage(properties, "ApproveProd")
    assert approval["ActionTypeId"] == {"Category": "Approval", "Owner": "AWS", "Provider": "Manual", "Version": "1"}
    for name in ("Dev", "Staging", "Prod"):
        actions = stage(properties, name)
        deploys = [a for a in actions if a["ActionTypeId"]["Provider"] == "CloudFormation"]
        smoke = actions[-1]
        assert smoke["Name"] == "SmokeTest"
        assert smoke["ActionTypeId"]["Provider"] == "CodeBuild"
        assert smoke["RunOrder"] > max(a["RunOrder"] for a in deploys)  # after every stack is deployed


def test_the_source_is_the_configured_connection_repository_and_branch(
    synthesized: Synthesized, platform_config: PlatformConfig
) -> None:
    promotion = platform_config.promotion
    assert promotion is not None
    (source,) = stage(pipeline(synthesized.templates["Tooling/Pipeline"]), "Source")
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["ConnectionArn"] == promotion.connection_arn
    assert source["Configuration"]["FullRepositoryId"] == promotion.repository
    assert source["Configuration"]["BranchName"] == promotion.branch


def test_the_build_runs_every_gate_before_it_synthesizes(synthesized: Synthesized) -> None:
    template = synthesized.templates["Tooling/Pipeline"]
    (synth,) = stage(pipeline(template), "Build")
    spec = build_spec(template, synth)
    assert spec["phases"]["build"]["commands"] == ["make test", "make synth"]  # the README's test command
    assert spec["phases"]["install"]["runtime-versions"] == {"python": "3.11", "nodejs": "20"}
    assert spec["artifacts"]["base-directory"] == "cdk.out"
    (mutate,) = stage(pipeline(template), "UpdatePipeline")
    commands = build_spec(template, mutate)["phases"]["build"]["commands"]
    assert commands == ["cdk -a assembly-Tooling deploy Tooling/Pipeline --require-approval=never --verbose"]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_stage_deploys_with_the_bootstrap_roles_of_its_own_account_and_region(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    account, region = settings.account, settings.region
    deploy_role = f"arn:aws:iam::{account}:role/cdk-hnb659fds-deploy-role-{account}-{region}"
    exec_role = f"arn:aws:iam::{account}:role/cdk-hnb659fds-cfn-exec-role-{account}-{region}"
    actions = stage(pipeline(synthesized.templates["Tooling/Pipeline"]), env.capitalize())
    deploys = [a for a in actions if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    monitored = ("monitoring",) if settings.monitoring.enabled else ()
    assert {a["Configuration"]["StackName"] for a in deploys} == {
        f"churn-{env}-{s}" for s in ("data", "network", "operations", "training", "deployment", "serving", *monitored)
    }
    for action in deploys:
        assert resolve(action["RoleArn"]) == deploy_role, action["Name"]
        assert action.get("Region", platform_config.tooling.region) == region
        if action["Configuration"]["ActionMode"] == "CHANGE_SET_REPLACE":
            assert resolve(action["Configuration"]["RoleArn"]) == exec_role, action["Name"]
    # The environment's own assembly asks for the same roles (what `cdk deploy` of one stage uses).
    manifest = json.loads((synthesized.outdir / f"assembly-{env.capitalize()}" / "manifest.json").read_text())
    stacks = [a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"]
    assert len(stacks) == 6 + len(monitored)
    for artifact in stacks:
        assert artifact["environment"] == f"aws://{account}/{region}"
        properties = artifact["properties"]
        assert properties["assumeRoleArn"].replace("${AWS::Partition}", "aws") == deploy_role
        assert properties["cloudFormationExecutionRoleArn"].replace("${AWS::Partition}", "aws") == exec_role


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_each_smoke_test_runs_the_script_with_that_environments_role(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    template = synthesized.templates["Tooling/Pipeline"]
    account = platform_config.environment(env).account
    target = f"arn:aws:iam::{account}:role/churn-{env}-smoke-test"
    smoke = stage(pipeline(template), env.capitalize())[-1]
    spec = build_spec(template, smoke)
    assert spec["phases"]["build"]["commands"] == [f"python -m scripts.smoke_test --env {env} --role-arn {target}"]
    assert any("requirements-dev.txt" in c for c in spec["phases"]["install"]["commands"])  # boto3 as pinned
    project = template["Resources"][smoke["Configuration"]["ProjectName"]["Ref"]]
    role_id = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    assert template["Resources"][role_id]["Properties"]["RoleName"] == f"churn-delivery-smoke-{env}"
    assumed = [
        resolve(s["Resource"])
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "sts:AssumeRole"
    ]
    assert assumed == [target]


def test_artifacts_are_encrypted_with_a_key_each_target_accounts_deploy_role_may_use(
    synthesized: Synthesized, platform_config: PlatformConfig
) -> None:
    template = synthesized.templates["Tooling/Pipeline"]
    store = pipeline(template)["ArtifactStore"]
    assert store["Type"] == "S3"
    key_id = store["EncryptionKey"]["Id"]["Fn::GetAtt"][0]
    key = template["Resources"][key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    principals: set[str] = set()
    for statement in key["KeyPolicy"]["Statement"]:
        if "kms:Decrypt" in statement["Action"]:
            found = resolve(statement["Principal"]["AWS"])
            principals |= set(found) if isinstance(found, list) else {found}
    for env in platform_config.environments:
        assert f"arn:aws:iam::{env.account}:role/cdk-hnb659fds-deploy-role-{env.account}-{env.region}" in principals
    bucket = template["Resources"][store["Location"]["Ref"]]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
        "KMSMasterKeyID"
    ] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "LoggingConfiguration" in bucket


def test_the_serving_image_is_published_after_logging_in_to_awss_image_registry(synthesized: Synthesized) -> None:
    template = synthesized.templates["Tooling/Pipeline"]
    actions = stage(pipeline(template), "Assets")
    (image,) = [a for a in actions if "ServingImage" in a["Name"]]
    spec = json.dumps(resolve(template["Resources"][image["Configuration"]["ProjectName"]["Ref"]]))
    assert "141502667606.dkr.ecr.eu-west-1" in spec  # AWS's XGBoost images in eu-west-1
    project = template["Resources"][image["Configuration"]["ProjectName"]["Ref"]]["Properties"]
    assert project["Environment"]["PrivilegedMode"] is True  # Docker builds the image


def test_an_environment_left_out_of_the_promotion_is_not_deployed_by_it(tmp_path: Path) -> None:
    raw = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    raw["promotion"]["environments"] = ["staging", "prod"]
    config = parse_config(raw)
    assembly = build_app(config, config.environment_names, outdir=str(tmp_path)).synth()
    template = next(s.template for s in assembly.stacks_recursively if s.hierarchical_id == "Tooling/Pipeline")
    names = [s["Name"] for s in pipeline(template)["Stages"]]
    assert names[-3:] == ["Staging", "ApproveProd", "Prod"]
    assert "Dev" not in names
    # dev is still synthesized, for `cdk deploy` by hand, and has no smoke-test role for the pipeline.
    dev = next(s.template for s in assembly.stacks_recursively if s.hierarchical_id == "Dev/Deployment")
    assert "churn-dev-smoke-test" not in json.dumps(dev)


def test_without_promotion_there_is_no_pipeline_and_no_cross_account_access(tmp_path: Path) -> None:
    raw = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    del raw["promotion"]
    next(e for e in raw["environments"] if e["name"] == "prod")["training"]["enabled"] = True
    config = parse_config(raw)
    app = build_app(config, config.environment_names, outdir=str(tmp_path))
    assert [c.node.id for c in app.node.children] == ["Dev", "Staging", "Prod"]
    assembly = app.synth()  # every policy pack is registered: synth is the gate
    for artifact in assembly.stacks_recursively:
        text = json.dumps(artifact.template)
        assert "smoke-test" not in text
        assert "model-intake" not in text, artifact.hierarchical_id


def test_only_the_listed_kinds_of_generated_findings_are_accepted() -> None:
    from platform_constructs.delivery_pipeline import GENERATED_FINDINGS

    def accepted(rule: str, path: str) -> bool:
        return any(k.rule.match(rule) and k.path.search(path) for k in GENERATED_FINDINGS)

    pipeline_role = "Tooling/Pipeline/DeliveryPipeline/Pipeline/Pipeline/Role/DefaultPolicy/Resource"
    assert accepted("NIST.800.53.R5-IAMNoInlinePolicy", pipeline_role)
    assert accepted("AwsSolutions-IAM5[Action::kms:GenerateDataKey*]", pipeline_role)
    assert accepted(
        "AwsSolutions-IAM5[Resource::*]",
        "Tooling/Pipeline/DeliveryPipeline/Pipeline/Assets/FileRole/DefaultPolicy/Resource",
    )
    # A wildcard anywhere else, or any other kind of finding, still fails synth.
    assert not accepted("AwsSolutions-IAM5[Resource::*]", pipeline_role)
    assert not accepted("AwsSolutions-IAM5[Action::iam:*]", pipeline_role)
    assert not accepted("AwsSolutions-S1", "Tooling/Pipeline/DeliveryPipeline/ArtifactsBucket/Resource")
    assert not accepted("NIST.800.53.R5-IAMNoInlinePolicy", "Prod/Serving/ModelRole/Role/Resource")


def test_the_pipeline_uses_the_cdk_cli_the_project_pins(synthesized: Synthesized) -> None:
    from platform_constructs.delivery_pipeline import CLI_VERSION

    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert pinned == CLI_VERSION
    template = synthesized.templates["Tooling/Pipeline"]
    (mutate,) = stage(pipeline(template), "UpdatePipeline")
    assert f"npm install -g aws-cdk@{CLI_VERSION}" in build_spec(template, mutate)["phases"]["install"]["commands"]
