"""The training stack: the pipeline definition, its jobs' security settings, roles and triggers."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from config import PlatformConfig
from platform_constructs.code_bundle import build_bundle
from platform_constructs.pipeline_definition import AUC_PATH, METRIC_DEFINITIONS, OBJECTIVE_METRIC
from policy.ml_platform_rules import parse_pipeline_definition
from tests.conftest import Synthesized, resources_of_type

ENVS = ["dev", "staging", "prod"]
SAGEMAKER_API = botocore.session.get_session().get_service_model("sagemaker")
JOB_OPERATIONS = {
    "Processing": ("CreateProcessingJob", "ProcessingJobName"),
    "Training": ("CreateTrainingJob", "TrainingJobName"),
    "Tuning": ("CreateHyperParameterTuningJob", "HyperParameterTuningJobName"),
    "RegisterModel": ("CreateModelPackage", None),
}


def definition(synthesized: Synthesized, env: str, pipeline: str = "training") -> dict[str, Any]:
    """The parsed definition of ``churn-<env>-<pipeline>`` (the training or the ingest-features one)."""
    (resource,) = [
        r
        for r in resources_of_type(synthesized.template(env, "Training"), "AWS::SageMaker::Pipeline").values()
        if r["Properties"]["PipelineName"] == f"churn-{env}-{pipeline}"
    ]
    parsed = parse_pipeline_definition(resource)
    assert parsed is not None
    return dict(parsed)


def all_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for step in steps:
        found.append(step)
        if step["Type"] == "Condition":
            found += all_steps(step["Arguments"]["IfSteps"]) + all_steps(step["Arguments"]["ElseSteps"])
    return found


def job_view(step: dict[str, Any]) -> dict[str, Any]:
    """The security-relevant fields of a job step, whatever its type."""
    args = step["Arguments"]
    if step["Type"] == "Tuning":
        args = args["TrainingJobDefinition"]
    if step["Type"] == "Processing":
        return {
            "isolation": args["NetworkConfig"]["EnableNetworkIsolation"],
            "encryption": args["NetworkConfig"]["EnableInterContainerTrafficEncryption"],
            "vpc": args["NetworkConfig"]["VpcConfig"],
            "volume_key": args["ProcessingResources"]["ClusterConfig"].get("VolumeKmsKeyId"),
            "output_key": args["ProcessingOutputConfig"].get("KmsKeyId"),
            "max_runtime": args["StoppingCondition"]["MaxRuntimeInSeconds"],
        }
    return {
        "isolation": args["EnableNetworkIsolation"],
        "encryption": args["EnableInterContainerTrafficEncryption"],
        "vpc": args["VpcConfig"],
        "volume_key": args["ResourceConfig"].get("VolumeKmsKeyId"),
        "output_key": args["OutputDataConfig"].get("KmsKeyId"),
        "max_runtime": args["StoppingCondition"]["MaxRuntimeInSeconds"],
    }


@pytest.mark.parametrize("env", ENVS)
def test_steps_follow_the_design(synthesized: Synthesized, platform_config: PlatformConfig, env: str) -> None:
    tuning = platform_config.environment(env).training.tuning.enabled
    steps = definition(synthesized, env)["Steps"]
    assert [s["Name"] for s in steps] == ["Preprocess", "Tune" if tuning else "Train", "Evaluate", "CheckAuc"]
    check = steps[3]["Arguments"]
    assert [s["Name"] for s in check["IfSteps"]] == ["MonitoringBaselines", "RegisterModel"]
    assert [s["Name"] for s in check["ElseSteps"]] == ["AucBelowThreshold"]
    (condition,) = check["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"]["Path"] == AUC_PATH
    assert condition["RightValue"] == {"Get": "Parameters.AucThreshold"}
    register = check["IfSteps"][1]["Arguments"]
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert register["ModelPackageGroupName"] == f"churn-{env}"
    assert "ModelQuality" in register["ModelMetrics"]
    assert set(register["DriftCheckBaselines"]["ModelDataQuality"]) == {"Statistics", "Constraints"}
    assert set(register["DriftCheckBaselines"]) == {"ModelDataQuality", "ModelQuality", "Bias", "Explainability"}


@pytest.mark.parametrize("env", ENVS)
def test_parameters_carry_the_environment_defaults(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env).training
    parameters = {p["Name"]: p for p in definition(synthesized, env)["Parameters"]}
    assert (
        parameters["InputDataUri"]["DefaultValue"]
        == f"s3://churn-{env}-raw-{platform_config.environment(env).account}-eu-west-1/churn/"
    )
    assert parameters["TrainingInstanceType"]["DefaultValue"] == settings.instance_type
    assert parameters["TrainingInstanceCount"]["DefaultValue"] == settings.instance_count
    assert parameters["AucThreshold"] == {
        "Name": "AucThreshold",
        "Type": "Float",
        "DefaultValue": settings.auc_threshold,
    }
    assert parameters["MaxRuntimeSeconds"]["DefaultValue"] == settings.max_runtime_seconds
    assert ("MaxWaitSeconds" in parameters) is settings.use_spot


@pytest.mark.parametrize("env", ENVS)
def test_every_job_is_isolated_encrypted_and_in_the_vpc(synthesized: Synthesized, env: str) -> None:
    jobs = [
        s for s in all_steps(definition(synthesized, env)["Steps"]) if s["Type"] in ("Processing", "Training", "Tuning")
    ]
    assert len(jobs) == 4
    for step in jobs:
        view = job_view(step)
        assert view["isolation"] is True, step["Name"]
        assert view["encryption"] is True, step["Name"]
        assert len(view["vpc"]["Subnets"]) >= 2, step["Name"]
        assert view["vpc"]["SecurityGroupIds"], step["Name"]
        assert view["volume_key"].startswith("${"), step["Name"]
        assert view["output_key"].startswith("${"), step["Name"]
        assert view["max_runtime"], step["Name"]


@pytest.mark.parametrize("env", ENVS)
def test_spot_training_with_checkpoints_where_configured(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env).training
    (train,) = [s for s in definition(synthesized, env)["Steps"] if s["Type"] in ("Training", "Tuning")]
    args = train["Arguments"]["TrainingJobDefinition"] if train["Type"] == "Tuning" else train["Arguments"]
    assert args["EnableManagedSpotTraining"] is settings.use_spot
    if settings.use_spot:
        assert args["StoppingCondition"]["MaxWaitTimeInSeconds"] == {"Get": "Parameters.MaxWaitSeconds"}
        checkpoint = args["CheckpointConfig"]
        assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"
        assert {"Get": "Execution.PipelineExecutionId"} in checkpoint["S3Uri"]["Std:Join"]["Values"]
    else:  # SageMaker rejects MaxWaitTimeInSeconds without managed spot training
        assert "MaxWaitTimeInSeconds" not in args["StoppingCondition"]
        assert "CheckpointConfig" not in args
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3DataDistributionType"] for c in args["InputDataConfig"]
    }
    assert channels == {"train": "ShardedByS3Key", "validation": "ShardedByS3Key", "code": "FullyReplicated"}


@pytest.mark.parametrize("env", ENVS)
def test_script_mode_runs_the_bundled_train_py(synthesized: Synthesized, env: str) -> None:
    (train,) = [s for s in definition(synthesized, env)["Steps"] if s["Type"] in ("Training", "Tuning")]
    args = train["Arguments"]
    hyperparameters = args.get("HyperParameters") or args["TrainingJobDefinition"]["StaticHyperParameters"]
    assert json.loads(hyperparameters["sagemaker_program"]) == "train.py"
    code = next(
        c
        for c in (args.get("InputDataConfig") or args["TrainingJobDefinition"]["InputDataConfig"])
        if c["ChannelName"] == "code"
    )
    code_file = code["DataSource"]["S3DataSource"]["S3Uri"].rsplit("/", 1)[1]
    assert json.loads(hyperparameters["sagemaker_submit_directory"]) == f"/opt/ml/input/data/code/{code_file}"
    if train["Type"] == "Tuning":
        tuned = {r["Name"] for kind in args["HyperParameterTuningJobConfig"]["ParameterRanges"].values() for r in kind}
        assert not tuned & set(hyperparameters), "a tuned hyperparameter must not also be static"
        assert (
            args["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] == OBJECTIVE_METRIC
        )


def _placeholder_for(shape: Any) -> Any:
    return {"string": "s3://placeholder/value", "integer": 1, "long": 1, "boolean": True, "float": 0.5, "double": 0.5}[
        shape.type_name
    ]


def _fill(value: Any, shape: Any) -> Any:
    """Replace pipeline expressions ({"Get": ...}, {"Std:Join": ...}) by a value of the shape's type."""
    if isinstance(value, dict) and ({"Get", "Std:Join", "Std:JsonGet"} & set(value)):
        return _placeholder_for(shape)
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _fill(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_fill(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _fill(v, shape.value) for k, v in value.items()}
    return value


@pytest.mark.parametrize("env", ENVS)
def test_step_arguments_are_valid_sagemaker_api_requests(synthesized: Synthesized, env: str) -> None:
    """Each step's arguments validated against botocore's SageMaker API model (offline)."""
    validated = 0
    for step in all_steps(definition(synthesized, env)["Steps"]):
        if step["Type"] not in JOB_OPERATIONS:
            continue
        operation, name_field = JOB_OPERATIONS[step["Type"]]
        shape = SAGEMAKER_API.operation_model(operation).input_shape
        request = _fill(step["Arguments"], shape)
        if name_field:
            request[name_field] = "pipeline-named"
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), f"{step['Name']}: {report.generate_report()}"
        validated += 1
    assert validated == 5  # preprocess, train/tune, evaluate, baseline, register


def _condition_keys(step: dict[str, Any]) -> dict[str, Any]:
    """The SageMaker IAM condition keys a job request sets (what the guardrails look at)."""
    view = job_view(step)
    return {
        "sagemaker:VpcSubnets": view["vpc"].get("Subnets"),
        "sagemaker:VpcSecurityGroupIds": view["vpc"].get("SecurityGroupIds"),
        "sagemaker:NetworkIsolation": view["isolation"],
        "sagemaker:InterContainerTrafficEncryption": view["encryption"],
        "sagemaker:VolumeKmsKey": view["volume_key"],
        "sagemaker:OutputKmsKey": view["output_key"],
    }


def _render(value: Any) -> Any:
    from policy.ml_platform_rules import _placeholder  # the same placeholders the definition uses

    return value if isinstance(value, str) else _placeholder(value)


def _denies(statement: dict[str, Any], keys: dict[str, Any]) -> bool:
    for operator, checks in statement["Condition"].items():
        for key, expected in checks.items():
            value = keys.get(key)
            if operator == "Null" and (value is None) != (expected == "true"):
                return False
            if operator == "Bool" and str(value).lower() != expected:
                return False
            if operator == "ArnNotEquals" and _render(value) in [_render(e) for e in expected]:
                return False
    return True


@pytest.mark.parametrize("env", ENVS)
def test_the_pipelines_own_jobs_pass_the_guardrails_its_roles_carry(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Training")
    guardrails = [
        p
        for k, p in resources_of_type(template, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("TrainingPipelineGuardrails")
    ]
    (policy,) = guardrails
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    actions = {
        "Processing": "sagemaker:CreateProcessingJob",
        "Training": "sagemaker:CreateTrainingJob",
        "Tuning": "sagemaker:CreateHyperParameterTuningJob",
    }
    checked = 0
    for step in all_steps(definition(synthesized, env)["Steps"]):
        if step["Type"] not in actions:
            continue
        keys = _condition_keys(step)
        for statement in statements:
            listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if actions[step["Type"]] in listed:
                assert not _denies(statement, keys), f"{statement['Sid']} would deny {step['Name']}"
                checked += 1
    assert checked > 20
    # ... and an unsafe request would be denied.
    unsafe = {**keys, "sagemaker:NetworkIsolation": False}
    assert any(_denies(s, unsafe) for s in statements if "sagemaker:CreateProcessingJob" in s["Action"])


@pytest.mark.parametrize("env", ENVS)
def test_roles_are_least_privilege(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Training")
    assert not resources_of_type(template, "AWS::IAM::Policy"), "no inline policies"
    roles = resources_of_type(template, "AWS::IAM::Role")
    for role in roles.values():
        assert "ManagedPolicyArns" not in role["Properties"] or all(
            "arn:aws:iam::aws:policy" not in json.dumps(arn) for arn in role["Properties"]["ManagedPolicyArns"]
        ), "no AWS managed policies"
    policies = resources_of_type(template, "AWS::IAM::ManagedPolicy")
    statements = [
        (name, s)
        for name, p in policies.items()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    ]
    for name, statement in statements:
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in listed), (name, listed)
    pass_role = {name: s for name, s in statements if s["Action"] == "iam:PassRole"}
    assert len(pass_role) == 2  # one per pipeline role
    for name, statement in pass_role.items():
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
        if name.startswith("TrainingPipeline"):
            assert len(statement["Resource"]) == 3  # processing, training, baseline roles only
        else:
            assert name.startswith("FeatureIngestionPipelineRole")
            assert statement["Resource"] == {"Fn::GetAtt": [statement["Resource"]["Fn::GetAtt"][0], "Arn"]}
            assert statement["Resource"]["Fn::GetAtt"][0].startswith("FeatureIngestionIngestionRole")
    create_jobs = [name for name, s in statements if "sagemaker:CreateTrainingJob" in json.dumps(s["Action"])]
    assert len(create_jobs) == 1
    assert create_jobs[0].startswith("TrainingPipelinePipelineRole")


@pytest.mark.parametrize("env", ENVS)
def test_retraining_is_scheduled_and_triggered_by_new_data(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    template = synthesized.template(env, "Training")
    (schedule,) = resources_of_type(template, "AWS::Scheduler::Schedule").values()
    assert schedule["Properties"]["ScheduleExpression"] == settings.training.schedule
    pipeline_arn = f"arn:aws:sagemaker:eu-west-1:{settings.account}:pipeline/churn-{env}-training"
    assert schedule["Properties"]["Target"]["Arn"] == pipeline_arn
    (rule,) = resources_of_type(template, "AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail"]["bucket"]["name"] == [f"churn-{env}-raw-{settings.account}-eu-west-1"]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "churn/*_SUCCESS"}]
    ingestion_arn = pipeline_arn.replace("-training", "-ingest-features")
    assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [pipeline_arn, ingestion_arn]
    starters = {
        name: p["Properties"]["PolicyDocument"]["Statement"]
        for name, p in resources_of_type(template, "AWS::IAM::ManagedPolicy").items()
        if "StartPipelineExecution" in json.dumps(p)
    }
    assert len(starters) == 2
    for name, statement in starters.items():
        started = sorted([pipeline_arn, ingestion_arn]) if "NewDataRule" in name else pipeline_arn  # schedule: retrain
        assert statement == [{"Action": "sagemaker:StartPipelineExecution", "Effect": "Allow", "Resource": started}]
    (raw,) = [
        b
        for k, b in resources_of_type(synthesized.template(env, "Data"), "AWS::S3::Bucket").items()
        if k.startswith("RawDataBucket")
    ]
    assert raw["Properties"]["NotificationConfiguration"]["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}


def test_metric_definitions_read_what_train_py_prints(sagemaker_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from churn_data import generate_customers, split_of, write_training_file
    from feature_schema import load_schema
    from train import main as train_main
    from training_env import run_job

    schema = load_schema()
    data = generate_customers(2000, seed=4)
    split = split_of(data["customer_id"], 1, (0.7, 0.3))
    for index, name in enumerate(("train", "validation")):
        write_training_file(data[split == index], sagemaker_root / "input" / "data" / name / "part.csv", schema)
    assert run_job(train_main, ["--num_round", "20", "--nthread", "1", "--early_stopping_rounds", "0"]) == 0
    log = capsys.readouterr().out
    found = {d["Name"]: re.findall(d["Regex"], log) for d in METRIC_DEFINITIONS}
    assert all(found.values()), found
    final = json.loads((sagemaker_root / "output" / "data" / "metrics.json").read_text())["validation"]
    # The last value SageMaker reads for the tuning objective is the final (best-round) one.
    assert float(found[OBJECTIVE_METRIC][-1]) == pytest.approx(final["auc"], abs=1e-6)


def test_the_auc_path_is_where_evaluate_py_writes_it(tmp_path: Path) -> None:
    import numpy as np
    import xgboost as xgb

    from evaluate import evaluate

    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(np.eye(4), label=[0, 1, 0, 1]), 2)
    report = evaluate(booster, np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1]))
    value: Any = report
    for part in AUC_PATH.split("."):
        value = value[part]
    assert isinstance(value, float)


def test_code_bundle_is_deterministic_and_holds_the_scripts() -> None:
    first, second = build_bundle(), build_bundle()
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert {"preprocess.py", "train.py", "evaluate.py", "feature_schema.json", "feature_schema.py"} <= set(names)
    assert all("/" not in n and not n.endswith(".txt") for n in names)
    assert {m.mtime for m in members} == {0}


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("env", ENVS)
def test_pipeline_definition_matches_snapshot(
    synthesized: Synthesized, json_snapshot: SnapshotAssertion, env: str
) -> None:
    from tests.test_snapshots import scrub

    assert scrub(definition(synthesized, env)) == json_snapshot
