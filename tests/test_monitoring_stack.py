"""The monitoring stack: the platform backend's pipeline, the native backend's schedules (synthesized here
with backend "model_monitor"), and the alarms, routes and dashboard both share."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from app import build_app
from config import PlatformConfig, load_config, parse_config
from config.settings import DEFAULT_CONFIG_PATH
from platform_constructs.model_monitoring import ALARMS, NOTIFY_AND_RETRAIN, alarm_routing_table, route_of
from platform_constructs.pipeline_definition import BASELINE_FILES
from policy.ml_platform_rules import check_stage, parse_pipeline_definition
from tests.conftest import ROOT, Synthesized, resources_of_type, walk

pytestmark = pytest.mark.slow
ENVS = ["staging", "prod"]
SAGEMAKER_API = botocore.session.get_session().get_service_model("sagemaker")
MONITORING_TYPES = {"DataQuality", "ModelQuality", "ModelBias", "ModelExplainability", "Comparison"}


def monitoring(synthesized: Synthesized, env: str) -> dict[str, Any]:
    return synthesized.template(env, "Monitoring")


def the_pipeline(template: dict[str, Any], env: str) -> dict[str, Any]:
    (resource,) = resources_of_type(template, "AWS::SageMaker::Pipeline").values()
    assert resource["Properties"]["PipelineName"] == f"churn-{env}-monitoring"
    parsed = parse_pipeline_definition(resource)
    assert parsed is not None
    return dict(parsed)


def steps_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    pending = list(definition["Steps"])
    while pending:
        step = pending.pop(0)
        found[step["Name"]] = step
        if step["Type"] == "Condition":
            pending += step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]
    return found


def function_id(template: dict[str, Any], handler: str) -> str:
    (logical_id,) = [
        k
        for k, r in resources_of_type(template, "AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == handler
    ]
    return logical_id


def policy_of(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    statements = []
    for policy in resources_of_type(template, "AWS::IAM::ManagedPolicy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return value if isinstance(value, list) else [value]


def role_of_function(template: dict[str, Any], logical_id: str) -> str:
    return str(template["Resources"][logical_id]["Properties"]["Role"]["Fn::GetAtt"][0])


# --- the platform backend ---------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_monitoring_pipeline_steps_and_lambda_steps(synthesized: Synthesized, env: str) -> None:
    template = monitoring(synthesized, env)
    definition = the_pipeline(template, env)
    steps = steps_of(definition)
    assert [s["Name"] for s in definition["Steps"]] == ["ResolveBaselines", "CheckTraffic"]
    check = steps["CheckTraffic"]["Arguments"]
    assert check["Conditions"] == [
        {
            "Type": "Equals",
            "LeftValue": {"Get": "Steps.ResolveBaselines.OutputParameters['status']"},
            "RightValue": "run",
        }
    ]
    assert [s["Name"] for s in check["IfSteps"]] == ["MonitorEndpoint", "PublishMetrics"]
    assert [s["Name"] for s in check["ElseSteps"]] == ["PublishNoTraffic"]
    resolver, publisher = (
        function_id(template, "monitoring_resolver.handler"),
        function_id(template, "monitoring_metrics.handler"),
    )
    expected_function = {"ResolveBaselines": resolver, "PublishMetrics": publisher, "PublishNoTraffic": publisher}
    for name, logical_id in expected_function.items():
        step = steps[name]
        # The shape of a Lambda step: SageMaker invokes FunctionArn with Arguments, reads OutputParameters.
        assert set(step) == {"Name", "Type", "Arguments", "FunctionArn", "OutputParameters", "TimeoutInSeconds"} | (
            {"DependsOn"} if name == "PublishMetrics" else set()
        )
        assert step["Type"] == "Lambda"
        assert step["FunctionArn"] == f"${{{logical_id}.Arn}}"
        assert isinstance(step["Arguments"], dict)
        assert 1 <= step["TimeoutInSeconds"] <= 600
        for output in step["OutputParameters"]:
            assert re.fullmatch(r"[A-Za-z0-9_]+", output["OutputName"])
            assert output["OutputType"] in ("String", "Integer", "Boolean", "Float")
    outputs = {o["OutputName"] for o in steps["ResolveBaselines"]["OutputParameters"]}
    # Every value a later step reads from ResolveBaselines is one of its declared outputs.
    read = set(re.findall(r"OutputParameters\['([^']+)'\]", json.dumps(definition)))
    assert read <= outputs
    assert steps["ResolveBaselines"]["Arguments"]["endpoint_name"] == f"churn-{env}"
    assert steps["PublishMetrics"]["DependsOn"] == ["MonitorEndpoint"]


def _placeholder(shape: Any) -> Any:
    return {"string": "s3://placeholder/value", "integer": 1, "long": 1, "boolean": True, "float": 0.5, "double": 0.5}[
        shape.type_name
    ]


def fill(value: Any, shape: Any) -> Any:
    """Pipeline expressions and CloudFormation intrinsics replaced by a value of the shape's type."""
    intrinsic = {"Get", "Std:Join", "Std:JsonGet", "Ref", "Fn::GetAtt", "Fn::Join", "Fn::Select", "Fn::GetStackOutput"}
    if isinstance(value, dict) and intrinsic & set(value):
        return _placeholder(shape)
    if isinstance(value, str) and value.startswith("${") and shape.type_name == "string":
        return "arn:aws:iam::123456789012:role/placeholder"
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: fill(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [fill(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: fill(v, shape.value) for k, v in value.items()}
    return value


@pytest.mark.parametrize("env", ENVS)
def test_the_monitoring_job_is_a_valid_isolated_encrypted_request(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env).monitoring
    serving = platform_config.environment(env).serving
    job = steps_of(the_pipeline(monitoring(synthesized, env), env))["MonitorEndpoint"]["Arguments"]
    shape = SAGEMAKER_API.operation_model("CreateProcessingJob").input_shape
    request = {**fill(job, shape), "ProcessingJobName": "pipeline-named"}
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert job["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert job["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
    assert len(job["NetworkConfig"]["VpcConfig"]["Subnets"]) >= 2
    assert job["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"].startswith("${")
    assert job["ProcessingOutputConfig"]["KmsKeyId"].startswith("${")
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == settings.max_runtime_seconds
    assert job["AppSpecification"]["ImageUri"].endswith("/sagemaker-xgboost:3.2-0")
    assert "monitor.py" in job["AppSpecification"]["ContainerEntrypoint"][2]
    inputs = {i["InputName"]: i["S3Input"] for i in job["ProcessingInputs"]}
    variants = [v.name for v in serving.variants] + (["Shadow"] if serving.shadow_variant else [])
    assert set(inputs) == {"code", "config", "capture", "labelled", "baselines"} | {f"model-{v}" for v in variants}
    assert len(inputs) <= 10  # CreateProcessingJob: at most 10 ProcessingInputs
    assert inputs["capture"]["S3DataType"] == inputs["labelled"]["S3DataType"] == "ManifestFile"
    for variant in variants:
        assert inputs[f"model-{variant}"]["LocalPath"] == f"/opt/ml/processing/input/models/{variant}"
    arguments = job["AppSpecification"]["ContainerArguments"]
    pairs = dict(zip(arguments[::2], arguments[1::2], strict=True))
    assert pairs["--metric-namespace"] == settings.metric_namespace
    assert pairs["--endpoint"] == f"churn-{env}"
    assert pairs["--champion-variant"] == variants[0]
    assert pairs["--config"].startswith(inputs["config"]["LocalPath"] + "/")
    assert pairs["--baselines"] == inputs["baselines"]["LocalPath"]
    assert pairs["--models"] == "/opt/ml/processing/input/models"
    (output,) = job["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["LocalPath"] == pairs["--output"]
    assert f"/reports/churn-{env}" in json.dumps(output["S3Output"]["S3Uri"])


@pytest.mark.parametrize("env", ENVS)
def test_pipeline_role_invokes_only_its_functions_and_passes_only_the_job_role(
    synthesized: Synthesized, env: str
) -> None:
    template = monitoring(synthesized, env)
    (pipeline,) = resources_of_type(template, "AWS::SageMaker::Pipeline").values()
    statements = policy_of(template, pipeline["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    (invoke,) = [s for s in statements if "lambda:InvokeFunction" in actions(s)]
    functions = {
        function_id(template, "monitoring_resolver.handler"),
        function_id(template, "monitoring_metrics.handler"),
    }
    assert {r["Fn::GetAtt"][0] for r in invoke["Resource"]} == functions
    (pass_role,) = [s for s in statements if "iam:PassRole" in actions(s)]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert pass_role["Resource"]["Fn::GetAtt"][0].startswith("ModelMonitoringPipelineJobRole")


@pytest.mark.parametrize("env", ENVS)
def test_metrics_go_to_the_monitoring_namespace_only(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    namespace = platform_config.environment(env).monitoring.metric_namespace
    template = monitoring(synthesized, env)
    writers = []
    for logical_id in resources_of_type(template, "AWS::IAM::Role"):
        for statement in policy_of(template, logical_id):
            if "cloudwatch:PutMetricData" in actions(statement):
                writers.append((logical_id, statement))
    publisher_role = role_of_function(template, function_id(template, "monitoring_metrics.handler"))
    own = [s for role, s in writers if role == publisher_role]
    assert own == [
        {
            "Action": "cloudwatch:PutMetricData",
            "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}},
            "Effect": "Allow",
            "Resource": "*",
        }
    ]
    # Every other writer is SageMaker's own job logging, scoped to AWS's /aws/sagemaker namespaces.
    for _, statement in (w for w in writers if w[0] != publisher_role):
        assert statement["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}
    # The functions reach CloudWatch through the "monitoring" VPC endpoint of the environment.
    network = synthesized.template(env, "Network")
    services = json.dumps(
        [e["Properties"]["ServiceName"] for e in resources_of_type(network, "AWS::EC2::VPCEndpoint").values()]
    )
    assert ".monitoring" in services
    assert ".sagemaker.api" in services


@pytest.mark.parametrize("env", ENVS)
def test_a_schedule_starts_the_monitoring_pipeline(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env).monitoring
    template = monitoring(synthesized, env)
    (schedule,) = resources_of_type(template, "AWS::Scheduler::Schedule").values()
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == f"cron({settings.start_minute} * * * ? *)"
    assert props["ScheduleExpressionTimezone"] == "UTC"
    assert props["State"] == "ENABLED"
    account = platform_config.environment(env).account
    target = f"arn:aws:sagemaker:eu-west-1:{account}:pipeline/churn-{env}-monitoring"
    assert props["Target"]["Arn"] == target
    role_id = props["Target"]["RoleArn"]["Fn::GetAtt"][0]
    (statement,) = policy_of(template, role_id)
    assert statement["Action"] == "sagemaker:StartPipelineExecution"
    assert statement["Resource"] == target


@pytest.mark.parametrize("env", ENVS)
def test_the_job_reads_capture_and_writes_reports_of_its_endpoint_only(synthesized: Synthesized, env: str) -> None:
    template = monitoring(synthesized, env)
    (job_role,) = [
        k for k in resources_of_type(template, "AWS::IAM::Role") if k.startswith("ModelMonitoringPipelineJobRole")
    ]
    statements = policy_of(template, job_role)
    writes = [json.dumps(s["Resource"]) for s in statements if "s3:PutObject" in actions(s)]
    assert writes == [
        f'"arn:aws:s3:::churn-{env}-monitoring-{synthesized_account(synthesized, env)}-eu-west-1/reports/churn-{env}/*"'
    ]
    reads = " ".join(json.dumps(s["Resource"]) for s in statements if "s3:GetObject" in actions(s))
    assert f"capture-{synthesized_account(synthesized, env)}-eu-west-1/churn-{env}/*" in reads


def synthesized_account(synthesized: Synthesized, env: str) -> str:
    return {"dev": "222222222222", "staging": "333333333333", "prod": "444444444444"}[env]


# --- alarms, routes, dashboard (both backends) -------------------------------------------------------


def monitoring_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["AlarmName"]: a
        for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
        if "-monitoring-" in str(a["Properties"].get("AlarmName"))
    }


def alarm_summary(template: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What an alarm watches and does, without construct-specific tokens."""
    return {
        name: (
            p["Namespace"],
            p["MetricName"],
            json.dumps(p["Dimensions"], sort_keys=True),
            p["Statistic"],
            p["Period"],
            p["Threshold"],
            p["ComparisonOperator"],
            p["EvaluationPeriods"],
            p["TreatMissingData"],
        )
        for name, alarm in monitoring_alarms(template).items()
        for p in [alarm["Properties"]]
    }


def retrain_targets(template: dict[str, Any]) -> set[str]:
    rules = [
        r
        for r in resources_of_type(template, "AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"].get("detail-type") == ["CloudWatch Alarm State Change"]
    ]
    if not rules:
        return set()  # an environment that does not train has nothing to start
    (rule,) = rules
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail"] == {"state": {"value": ["ALARM"]}}
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0] == function_id(template, "retrain_on_drift.handler")
    ids = {r["Fn::GetAtt"][0] for r in pattern["resources"]}
    return {template["Resources"][i]["Properties"]["AlarmName"] for i in ids}


@pytest.mark.parametrize("env", ENVS)
def test_every_monitoring_alarm_notifies_and_only_champion_drift_retrains(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    env_config = platform_config.environment(env)
    settings = env_config.monitoring
    variants = [v.name for v in env_config.serving.variants] + (["Shadow"] if env_config.serving.shadow_variant else [])
    template = monitoring(synthesized, env)
    alarms = monitoring_alarms(template)
    operations_topic = "PublishOutputRefAlertsTopic"
    expected: dict[str, str] = {}
    for index, variant in enumerate(variants):
        for kind in ALARMS:
            if kind.challenger_only and index == 0:
                continue
            # An environment that does not train (prod: it serves what staging promotes) only notifies.
            retrain_on = settings.thresholds.retrain_on if env_config.training.enabled else ()
            expected[f"churn-{env}-monitoring-{variant}-{kind.name}"] = route_of(
                kind, champion=index == 0, retrain_on=retrain_on
            )
    assert set(alarms) == set(expected)
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert "Condition" not in alarm, f"{name} must exist before any model is deployed"
        (action,) = props["AlarmActions"]
        assert operations_topic in json.dumps(action), name  # every alarm notifies the alarm topic
        assert props["TreatMissingData"] == "notBreaching"
        dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        assert dims["Endpoint"] == f"churn-{env}"
        assert dims["MonitoringType"] in MONITORING_TYPES
        assert props["Namespace"] == settings.metric_namespace
        assert props["Period"] == settings.schedule_seconds
        assert expected[name].endswith("retrain") == (expected[name] == NOTIFY_AND_RETRAIN)
    retraining = {n for n, route in expected.items() if route == NOTIFY_AND_RETRAIN}
    assert retrain_targets(template) == retraining
    assert retraining == (
        {
            f"churn-{env}-monitoring-{variants[0]}-{kind}"
            for kind in ("data-drift", "model-quality", "attribution-drift")
        }
        if env_config.training.enabled
        else set()
    )
    assert not any("integrity" in n for n in retraining), "never retrain on broken data"


def test_an_environment_that_does_not_train_has_no_retraining_function(
    synthesized: Synthesized, platform_config: PlatformConfig
) -> None:
    assert not platform_config.environment("prod").training.enabled
    template = monitoring(synthesized, "prod")
    handlers = [r["Properties"]["Handler"] for r in resources_of_type(template, "AWS::Lambda::Function").values()]
    assert "retrain_on_drift.handler" not in handlers
    assert retrain_targets(template) == set()


@pytest.mark.parametrize("env", [e for e in ENVS if load_config().environment(e).training.enabled])
def test_retraining_function_starts_only_the_training_pipeline(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env).monitoring
    template = monitoring(synthesized, env)
    logical_id = function_id(template, "retrain_on_drift.handler")
    environment = template["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
    assert environment["TRAINING_PIPELINE_NAME"] == f"churn-{env}-training"
    assert environment["COOLDOWN_HOURS"] == str(settings.retrain_cooldown_hours)
    statements = policy_of(template, role_of_function(template, logical_id))
    (start,) = [s for s in statements if "sagemaker:StartPipelineExecution" in actions(s)]
    account = platform_config.environment(env).account
    assert start["Resource"] == f"arn:aws:sagemaker:eu-west-1:{account}:pipeline/churn-{env}-training"
    permissions = [
        p
        for p in resources_of_type(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    ]
    assert [p["Properties"]["Principal"] for p in permissions] == ["events.amazonaws.com"]


@pytest.mark.parametrize("env", ENVS)
def test_the_dashboard_exists_from_the_first_deploy(synthesized: Synthesized, env: str) -> None:
    template = monitoring(synthesized, env)
    (dashboard,) = resources_of_type(template, "AWS::CloudWatch::Dashboard").values()
    assert "Condition" not in dashboard
    assert dashboard["Properties"]["DashboardName"] == f"churn-{env}-monitoring"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("data_drift_violations", "data_integrity_violations", "records_analyzed", "challenger_verdict"):
        assert metric in body


def test_the_readme_table_is_the_routing_the_code_builds() -> None:
    assert alarm_routing_table() in (ROOT / "README.md").read_text()


def test_every_endpoint_with_capture_is_monitored_in_every_environment(synthesized: Synthesized) -> None:
    for stage in ("Dev", "Staging", "Prod"):
        templates = {k: t for k, t in synthesized.templates.items() if k.startswith(f"{stage}/")}
        assert check_stage(templates) == []
    captured = [
        e
        for e in ENVS
        if any(
            "DataCaptureConfig" in c["Properties"]
            for c in resources_of_type(synthesized.template(e, "Serving"), "AWS::SageMaker::EndpointConfig").values()
        )
    ]
    assert captured == ENVS  # the rule had something to check


def test_the_training_pipeline_registers_what_baseline_py_writes(synthesized: Synthesized) -> None:
    from tests.test_training_pipeline import all_steps, definition

    steps = {s["Name"]: s for s in all_steps(definition(synthesized, "staging")["Steps"])}
    baseline = steps["MonitoringBaselines"]["Arguments"]
    assert "baseline.py" in baseline["AppSpecification"]["ContainerEntrypoint"][2]
    assert baseline["NetworkConfig"]["EnableNetworkIsolation"] is True
    inputs = {i["InputName"] for i in baseline["ProcessingInputs"]}
    assert inputs == {"code", "config", "baseline", "model", "test", "evaluation"}
    registered = steps["RegisterModel"]["Arguments"]
    uris = [
        v["S3Uri"]
        for part in ("DriftCheckBaselines", "ModelMetrics")
        for group in registered[part].values()
        for v in group.values()
    ]
    files = {u["Std:Join"]["Values"][1] for u in uris if "MonitoringBaselines" in json.dumps(u)}
    assert files == set(BASELINE_FILES.values())  # every file baseline.py writes is registered
    drift = registered["DriftCheckBaselines"]
    assert drift["Bias"]["ConfigFile"]["S3Uri"]["Std:Join"]["Values"][1] == "bias/analysis_config.json"
    assert drift["Explainability"]["Constraints"]["S3Uri"]["Std:Join"]["Values"][1] == "attribution/analysis.json"


# --- the native backend, synthesized with every policy pack ---------------------------------------


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    raw = copy.deepcopy(tomllib.loads(DEFAULT_CONFIG_PATH.read_text()))
    prod = next(e for e in raw["environments"] if e["name"] == "prod")
    prod["monitoring"]["backend"] = "model_monitor"
    config = parse_config(raw)
    app = build_app(config, ["prod"], outdir=str(tmp_path_factory.mktemp("cdk.out.native")))
    try:
        assembly = app.synth()  # every policy pack: an unacknowledged finding fails here
    except Exception as error:  # noqa: BLE001  (jsii raises a plain Exception carrying the report)
        pytest.fail(f"the model_monitor backend fails the policy gates:\n{error}", pytrace=False)
    return {s.hierarchical_id: s.template for s in assembly.stacks_recursively}


JOB_TYPES = {
    "AWS::SageMaker::DataQualityJobDefinition": "CreateDataQualityJobDefinition",
    "AWS::SageMaker::ModelQualityJobDefinition": "CreateModelQualityJobDefinition",
    "AWS::SageMaker::ModelBiasJobDefinition": "CreateModelBiasJobDefinition",
    "AWS::SageMaker::ModelExplainabilityJobDefinition": "CreateModelExplainabilityJobDefinition",
}


def test_native_backend_schedules_four_monitors_with_the_served_baselines(native: dict[str, dict[str, Any]]) -> None:
    template = native["Prod/Monitoring"]
    assert not resources_of_type(template, "AWS::SageMaker::Pipeline")
    assert template["Parameters"]["ServedBaselineUri"]["Default"] == "none"
    definitions = {k: r for k, r in template["Resources"].items() if r["Type"] in JOB_TYPES}
    assert sorted(r["Type"] for r in definitions.values()) == sorted(JOB_TYPES)
    for logical_id, resource in definitions.items():
        props = resource["Properties"]
        assert resource["Condition"] == "HasServedBaseline"
        assert "JobDefinitionName" not in props  # generated: an update replaces it cleanly
        assert props["NetworkConfig"]["EnableNetworkIsolation"] is True
        assert props["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
        assert props["JobResources"]["ClusterConfig"]["VolumeKmsKeyId"]
        shape = SAGEMAKER_API.operation_model(JOB_TYPES[resource["Type"]]).input_shape
        request = {**fill(props, shape), "JobDefinitionName": "generated"}
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), f"{logical_id}: {report.generate_report()}"
        baselines = [v for v in walk(props) if isinstance(v, dict) and "Fn::Join" in v]
        assert any({"Ref": "ServedBaselineUri"} in v["Fn::Join"][1] for v in baselines), logical_id
    schedules = resources_of_type(template, "AWS::SageMaker::MonitoringSchedule")
    assert {s["Properties"]["MonitoringScheduleName"] for s in schedules.values()} == {
        f"churn-prod-{k}" for k in ("data-quality", "model-quality", "model-bias", "model-explainability")
    }
    for schedule in schedules.values():
        config = schedule["Properties"]["MonitoringScheduleConfig"]
        assert schedule["Properties"]["EndpointName"] == "churn-prod"
        assert config["ScheduleConfig"]["ScheduleExpression"] == "cron(0 * ? * * *)"
        referenced = config["MonitoringJobDefinitionName"]["Fn::Select"][1]["Fn::Split"][1]["Ref"]
        assert template["Resources"][referenced]["Type"] in JOB_TYPES
    quality = next(r for r in definitions.values() if r["Type"] == "AWS::SageMaker::ModelQualityJobDefinition")
    endpoint_input = quality["Properties"]["ModelQualityJobInput"]["EndpointInput"]
    assert (endpoint_input["StartTimeOffset"], endpoint_input["EndTimeOffset"]) == ("-PT25H", "-PT24H")
    assert quality["Properties"]["ModelQualityJobInput"]["GroundTruthS3Input"]["S3Uri"].endswith(
        "/churn-prod/ground-truth"
    )


def test_native_backend_republishes_and_alerts_on_failed_runs(native: dict[str, dict[str, Any]]) -> None:
    template = native["Prod/Monitoring"]
    rules = [r["Properties"] for r in resources_of_type(template, "AWS::Events::Rule").values()]
    by_status = {
        tuple(r["EventPattern"]["detail"]["ProcessingJobStatus"]): r
        for r in rules
        if r["EventPattern"].get("detail-type") == ["SageMaker Processing Job State Change"]
    }
    assert set(by_status) == {("Completed",), ("Failed", "Stopped")}
    (republish,) = by_status[("Completed",)]["Targets"]
    assert republish["Arn"]["Fn::GetAtt"][0] == function_id(template, "model_monitor_republisher.handler")
    (alert,) = by_status[("Failed", "Stopped")]["Targets"]
    assert "PublishOutputRefAlertsTopic" in json.dumps(alert["Arn"])
    for rule in by_status.values():
        arns = json.dumps(rule["EventPattern"]["detail"]["MonitoringScheduleArn"])
        assert arns.count(":monitoring-schedule/churn-prod-") == 4


def test_switching_backends_changes_no_alarm_and_no_route(
    synthesized: Synthesized, native: dict[str, dict[str, Any]]
) -> None:
    platform, model_monitor = synthesized.template("prod", "Monitoring"), native["Prod/Monitoring"]
    assert alarm_summary(platform) == alarm_summary(model_monitor)
    assert retrain_targets(platform) == retrain_targets(model_monitor)
    dashboards = [resources_of_type(t, "AWS::CloudWatch::Dashboard") for t in (platform, model_monitor)]
    assert all(len(d) == 1 for d in dashboards)


def test_native_backend_passes_the_project_rule_too(native: dict[str, dict[str, Any]]) -> None:
    assert check_stage(native) == []
