"""The serving stack: approved model packages in, a guarded, autoscaled, observed endpoint out."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from app import build_app
from config import PlatformConfig, parse_config
from config.settings import DEFAULT_CONFIG_PATH
from policy.ml_platform_rules import check_template, parse_pipeline_definition
from tests.conftest import Synthesized, resources_of_type

ENVS = ["dev", "staging", "prod"]
CONDITIONAL = (
    "AWS::SageMaker::Model",
    "AWS::SageMaker::EndpointConfig",
    "AWS::SageMaker::Endpoint",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
)


def one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = resources_of_type(template, kind).values()
    return resource


@pytest.mark.parametrize("env", ENVS)
def test_model_packages_are_deploy_time_parameters_and_everything_waits_for_one(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    template = synthesized.template(env, "Serving")
    names = [v.name for v in settings.serving.variants] + (["Shadow"] if settings.serving.shadow_variant else [])
    assert sorted(k for k in template["Parameters"] if k.endswith("ModelPackageArn")) == sorted(
        f"{n}ModelPackageArn" for n in names
    )
    for name in names:
        # Read from the variant's SSM parameter, which the model deployer writes on approval: a plain
        # deployment keeps the approved package, and nobody types an ARN.
        parameter = template["Parameters"][f"{name}ModelPackageArn"]
        assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
        assert parameter["Default"] == f"churn-{env}-{name}-model-package"
    (seed,) = resources_of_type(synthesized.template(env, "Deployment"), "Custom::ModelPackageParameters").values()
    assert seed["Properties"]["Parameters"] == {n: f"churn-{env}-{n}-model-package" for n in names}
    condition = template["Conditions"]["HasApprovedModel"]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": f"{names[0]}ModelPackageArn"}, "none"]}]}
    for kind in CONDITIONAL:
        for logical_id, resource in resources_of_type(template, kind).items():
            assert resource.get("Condition") == "HasApprovedModel", logical_id
    # The batch scoring pipeline and the roles exist without a model.
    assert "Condition" not in one(template, "AWS::SageMaker::Pipeline")


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_realtime_endpoint_settings(synthesized: Synthesized, platform_config: PlatformConfig, env: str) -> None:
    serving = platform_config.environment(env).serving
    template = synthesized.template(env, "Serving")
    config = one(template, "AWS::SageMaker::EndpointConfig")["Properties"]
    variants = {v["VariantName"]: v for v in config["ProductionVariants"]}
    assert {n: v["InitialVariantWeight"] for n, v in variants.items()} == {v.name: v.weight for v in serving.variants}
    for variant in variants.values():
        assert variant["InstanceType"] == serving.instance_type
        assert variant["InitialInstanceCount"] >= 2
        assert variant["ModelDataDownloadTimeoutInSeconds"] == serving.model_download_timeout_seconds
        assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == serving.container_startup_timeout_seconds
    assert ("ShadowProductionVariants" in config) is serving.shadow_variant
    assert "KmsKeyId" in config
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == serving.capture_sampling_percentage
    assert "KmsKeyId" in capture
    assert capture["DestinationS3Uri"].startswith(f"s3://churn-{env}-capture-")
    for model in resources_of_type(template, "AWS::SageMaker::Model").values():
        props = model["Properties"]
        assert props["EnableNetworkIsolation"] is True
        assert len(props["VpcConfig"]["Subnets"]) >= 2
        assert "ModelPackageName" in props["Containers"][0]


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_updates_shift_traffic_gradually_and_roll_back_on_alarms(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    serving = platform_config.environment(env).serving
    template = synthesized.template(env, "Serving")
    endpoint = one(template, "AWS::SageMaker::Endpoint")["Properties"]
    assert endpoint["EndpointName"] == f"churn-{env}"
    assert endpoint["RetainAllVariantProperties"] is True
    assert endpoint["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DesiredWeight"}]
    policy = endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert policy == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": serving.canary_percent},
        "WaitIntervalInSeconds": serving.baking_seconds,
    }
    rollback = [a["AlarmName"]["Ref"] for a in endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    metrics = sorted(alarms[name]["Properties"]["MetricName"] for name in rollback)
    assert metrics == sorted(["Invocation5XXErrors", "ModelLatency"] * len(serving.variants))
    latency = next(alarms[n] for n in rollback if alarms[n]["Properties"]["MetricName"] == "ModelLatency")
    assert latency["Properties"]["Threshold"] == serving.latency_p99_ms * 1000
    assert latency["Properties"]["ExtendedStatistic"] == "p99"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_every_variant_scales_on_invocations_per_instance(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    serving = platform_config.environment(env).serving
    template = synthesized.template(env, "Serving")
    targets = resources_of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert sorted(t["Properties"]["ResourceId"] for t in targets) == sorted(
        f"endpoint/churn-{env}/variant/{v.name}" for v in serving.variants
    )
    for target in targets:
        assert target["Properties"]["MinCapacity"] == serving.min_capacity >= 2
        assert target["Properties"]["MaxCapacity"] == serving.max_capacity
        assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in json.dumps(
            target["Properties"]["RoleARN"]
        )
        assert target["DependsOn"]  # registered only after the endpoint exists
    for policy in resources_of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values():
        tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        assert tracking["TargetValue"] == serving.max_rps_per_instance * serving.scaling_safety_factor * 60
        assert (
            tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
            == "SageMakerVariantInvocationsPerInstance"
        )
        assert tracking["ScaleInCooldown"] == serving.scale_in_cooldown_seconds


@pytest.mark.parametrize("env", ENVS)
def test_alarms_notify_the_environments_alarm_topic_and_a_dashboard_shows_the_endpoint(
    synthesized: Synthesized, env: str
) -> None:
    template = synthesized.template(env, "Serving")
    operations = synthesized.template(env, "Operations")
    (topic_id,) = resources_of_type(operations, "AWS::SNS::Topic")
    (output_name,) = [
        name for name, o in operations["Outputs"].items() if o["Value"] == {"Ref": topic_id} and "Publish" in name
    ]
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    assert alarms
    for logical_id, alarm in alarms.items():
        for actions in (alarm["Properties"]["AlarmActions"], alarm["Properties"]["OKActions"]):
            (action,) = actions
            assert action["Fn::GetStackOutput"]["StackName"] == f"churn-{env}-operations", logical_id
            assert action["Fn::GetStackOutput"]["OutputName"] == output_name, logical_id
    body = json.dumps(one(template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    for metric in ("Invocations", "Invocation5XXErrors", "ModelLatency", "OverheadLatency"):
        assert metric in body


def test_dev_serves_serverless_and_scales_to_zero(synthesized: Synthesized) -> None:
    template = synthesized.template("dev", "Serving")
    (variant,) = one(template, "AWS::SageMaker::EndpointConfig")["Properties"]["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MaxConcurrency": 5, "MemorySizeInMB": 2048}
    assert not resources_of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert "DeploymentConfig" not in one(template, "AWS::SageMaker::Endpoint")["Properties"]


@pytest.mark.parametrize("env", ENVS)
def test_model_role_pulls_only_the_serving_image_and_writes_only_its_capture_prefix(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    account = platform_config.environment(env).account
    template = synthesized.template(env, "Serving")
    policies = {
        k: p for k, p in resources_of_type(template, "AWS::IAM::ManagedPolicy").items() if k.startswith("ModelRole")
    }
    (policy,) = policies.values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    pulls = next(s for s in statements if "ecr:BatchGetImage" in s["Action"])
    assert (
        pulls["Resource"]
        == f"arn:aws:ecr:eu-west-1:{account}:repository/cdk-hnb659fds-container-assets-{account}-eu-west-1"
    )
    writes = [s for s in statements if "s3:PutObject" in s["Action"]]
    resources = sorted(json.dumps(s["Resource"]) for s in writes)
    assert any(f"churn-{env}-capture-{account}-eu-west-1/churn-{env}/*" in r for r in resources)


def _placeholder(shape: Any) -> Any:
    return {"string": "placeholder", "integer": 1, "boolean": True, "float": 0.5, "double": 0.5, "long": 1}[
        shape.type_name
    ]


def _fill(value: Any, shape: Any) -> Any:
    if isinstance(value, dict) and ({"Get", "Std:Join"} & set(value)):
        return _placeholder(shape)
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _fill(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_fill(v, shape.member) for v in value]
    return value


@pytest.mark.parametrize("env", ENVS)
def test_batch_scoring_pipeline_is_valid_isolated_and_encrypted(synthesized: Synthesized, env: str) -> None:
    definition = parse_pipeline_definition(one(synthesized.template(env, "Serving"), "AWS::SageMaker::Pipeline"))
    assert definition is not None
    steps = {s["Name"]: s for s in definition["Steps"]}
    assert steps["CreateModel"]["Arguments"]["EnableNetworkIsolation"] is True
    transform = steps["Score"]["Arguments"]
    assert transform["TransformOutput"]["KmsKeyId"].startswith("${")
    assert transform["TransformResources"]["VolumeKmsKeyId"].startswith("${")
    api = botocore.session.get_session().get_service_model("sagemaker")
    for operation, args, name_field in (
        ("CreateModel", steps["CreateModel"]["Arguments"], "ModelName"),
        ("CreateTransformJob", transform, "TransformJobName"),
    ):
        shape = api.operation_model(operation).input_shape
        request = {**_fill(args, shape), name_field: "pipeline-named"}
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), report.generate_report()


def _app_with_dev_serving(tmp_path: Path, **serving: Any) -> Any:
    raw = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    dev = next(e for e in raw["environments"] if e["name"] == "dev")
    dev["serving"] = {**copy.deepcopy(dev["serving"]), **serving}
    if dev["serving"].get("inference_type") != "serverless":
        dev["monitoring"] = {"enabled": True}  # an endpoint with capture is monitored (MlPlatform-EndpointMonitored)
    config = parse_config(raw)
    return build_app(config, ["dev"], outdir=str(tmp_path))  # every policy pack: synth is the gate


@pytest.mark.slow
def test_async_inference_passes_every_gate(tmp_path: Path) -> None:
    """The third inference type, built on the side: S3 results, SNS notifications, backlog scaling."""
    app = _app_with_dev_serving(
        tmp_path,
        inference_type="async",
        variants=[{"name": "Champion", "weight": 1.0}],
        min_capacity=0,
        initial_instance_count=1,
    )
    assembly = app.synth()
    template = next(s.template for s in assembly.stacks_recursively if s.hierarchical_id == "Dev/Serving")
    config = one(template, "AWS::SageMaker::EndpointConfig")["Properties"]
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    assert output["S3OutputPath"].endswith("/churn-dev/async/results")
    assert "KmsKeyId" in output
    assert set(output["NotificationConfig"]) == {"SuccessTopic", "ErrorTopic"}
    topics = resources_of_type(template, "AWS::SNS::Topic").values()
    assert len(topics) == 2  # success and error; the alarm topic lives in the Operations stack
    assert all("KmsMasterKeyId" in t["Properties"] for t in topics)
    (policy,) = resources_of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    metric = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert metric["MetricName"] == "ApproximateBacklogSizePerInstance"
    # Dev may run one instance per variant; that one finding is acknowledged, nothing else is found.
    assert {f.rule_id for f in check_template(template)} == {"MlPlatform-EndpointMultiInstance"}


def test_serverless_is_refused_outside_dev() -> None:
    raw = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    prod = next(e for e in raw["environments"] if e["name"] == "prod")
    prod["serving"] = {"inference_type": "serverless", "variants": [{"name": "Champion"}]}
    with pytest.raises(ValueError, match="use 'realtime' or 'async' outside dev"):
        parse_config(raw)
