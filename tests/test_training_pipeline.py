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

from config import PlatformConfig, load_config
from platform_constructs.code_bundle import build_bundle
from platform_constructs.pipeline_definition import AUC_PATH, METRIC_DEFINITIONS, OBJECTIVE_METRIC
from policy.ml_platform_rules import parse_pipeline_definition
from tests.conftest import Synthesized, resources_of_type

# Environments that train their own models (prod serves the models staging promotes: training.enabled = false).
ENVS = [env.name for env in load_config().environments if env.training.enabled]
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


@pytest.fixture(scope="module")
def prod_when_it_trains(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Prod as it is when config turns its own training on (the shipped prod receives staging's models)."""
    import tomllib

    from app import build_app
    from config import parse_config
    from config.settings import DEFAULT_CONFIG_PATH

    raw = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    prod = next(e for e in raw["environments"] if e["name"] == "prod")
    prod["training"]["enabled"] = True
    outdir = tmp_path_factory.mktemp("cdk.out.prod-trains")
    assembly = build_app(parse_config(raw), ["prod"], outdir=str(outdir)).synth()
    stacks = list(assembly.stacks_recursively)
    return Synthesized(
        outdir=outdir,
        templates={s.hierarchical_id: s.template for s in stacks},
        template_paths={s.hierarchical_id: Path(s.template_full_path) for s in stacks},
        report={},
    )


@pytest.fixture(params=["staging", "prod"])
def trains_from_the_feature_store(request: pytest.FixtureRequest, synthesized: Synthesized) -> tuple[Synthesized, str]:
    """Staging as shipped, and prod with its own training turned on: both train on training sets."""
    env = str(request.param)
    if env == "prod":
        return request.getfixturevalue("prod_when_it_trains"), env
    return synthesized, env


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
    settings = platform_config.environment(env).training
    tuning = settings.tuning.enabled
    steps = definition(synthesized, env)["Steps"]
    first = ["BuildTrainingSet"] if settings.source == "feature_store" else []
    assert [s["Name"] for s in steps] == [*first, "Preprocess", "Tune" if tuning else "Train", "Evaluate", "CheckAuc"]
    check = steps[-1]["Arguments"]
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
    # The model version records the data it learnt from.
    metadata = register["CustomerMetadataProperties"]
    assert metadata["TrainingSource"] == settings.source
    if settings.source == "feature_store":
        assert metadata["LabelsUri"] == {"Get": "Parameters.LabelsUri"}
        report = metadata["TrainingSetReport"]["Std:Join"]["Values"]
        assert report == [
            {"Get": "Steps.BuildTrainingSet.ProcessingOutputConfig.Outputs['report'].S3Output.S3Uri"},
            "training_set.json",
        ]
    else:
        assert metadata["InputDataUri"] == {"Get": "Parameters.InputDataUri"}


def _raw_input(steps: list[dict[str, Any]]) -> Any:
    (preprocess,) = [s for s in steps if s["Name"] == "Preprocess"]
    (raw,) = [i for i in preprocess["Arguments"]["ProcessingInputs"] if i["InputName"] == "raw"]
    return raw["S3Input"]["S3Uri"]


def test_staging_and_prod_train_on_point_in_time_training_sets(
    trains_from_the_feature_store: tuple[Synthesized, str],
) -> None:
    synthesized, env = trains_from_the_feature_store
    steps = definition(synthesized, env)["Steps"]
    assert steps[0]["Name"] == "BuildTrainingSet"
    # Preprocess reads what the training-set step wrote, not the raw files; downstream nothing changes.
    assert _raw_input(steps) == {
        "Get": "Steps.BuildTrainingSet.ProcessingOutputConfig.Outputs['training_set'].S3Output.S3Uri"
    }
    build = steps[0]["Arguments"]
    assert build["AppSpecification"]["ContainerEntrypoint"][-1] == "build_training_set"
    (labels,) = [i for i in build["ProcessingInputs"] if i["InputName"] == "labels"]
    assert labels["S3Input"]["S3Uri"] == {"Get": "Parameters.LabelsUri"}
    assert labels["S3Input"]["LocalPath"] == "/opt/ml/processing/input/labels"
    outputs = {o["OutputName"]: o["S3Output"]["LocalPath"] for o in build["ProcessingOutputConfig"]["Outputs"]}
    assert outputs == {
        "training_set": "/opt/ml/processing/output/training_set",
        "report": "/opt/ml/processing/output/report",
    }


def _step_query(synthesized: Synthesized, env: str) -> tuple[Any, str]:
    """The job's parsed arguments and the SQL it sends to Athena, from the synthesized step."""
    from build_training_set import TrainingSetQuery, dataset_of, parse_args
    from feature_schema import load_schema

    (build,) = [s for s in definition(synthesized, env)["Steps"] if s["Name"] == "BuildTrainingSet"]
    arguments = build["Arguments"]["AppSpecification"]["ContainerArguments"]
    default = {p["Name"]: p for p in definition(synthesized, env)["Parameters"]}["LabelsUri"]["DefaultValue"]
    args = parse_args([default if value == {"Get": "Parameters.LabelsUri"} else value for value in arguments])
    query = TrainingSetQuery(
        f"{args.database}.{args.feature_table}",
        f"{args.database}.{args.labels_table}",
        dataset_of(args.labels_uri, args.labels_root),
    )
    return args, query.sql(load_schema(), "athena")


def test_the_step_sends_the_proven_query_over_this_environments_tables(
    trains_from_the_feature_store: tuple[Synthesized, str], platform_config: PlatformConfig
) -> None:
    """The job's Athena text is the point-in-time query proven on DuckDB (tests/test_training_set.py,
    tests/test_build_training_set.py), over the tables this environment defines."""
    synthesized, env = trains_from_the_feature_store
    from feature_schema import load_schema
    from training_set import labels_query, point_in_time_query

    args, sql = _step_query(synthesized, env)
    settings = platform_config.environment(env)
    assert args.engine == "athena"
    assert args.workgroup == f"churn-{env}-features"
    assert (
        args.labels_uri
        == f"s3://churn-{env}-raw-{settings.account}-eu-west-1/labels/{settings.training.labels_dataset}/"
    )
    schema = load_schema()
    assert sql == point_in_time_query(
        schema,
        feature_table=f"churn_{env}_features.customers_v{settings.feature_store.group_version}",
        entity_query=labels_query(
            schema, labels_table=f"churn_{env}_features.labels", dataset=settings.training.labels_dataset
        ),
        dialect="athena",
    )
    # Those tables exist: the feature group's offline table and the labels table, in one database.
    (group,) = resources_of_type(synthesized.template(env, "Data"), "AWS::SageMaker::FeatureGroup").values()
    catalog = group["Properties"]["OfflineStoreConfig"]["DataCatalogConfig"]
    assert (catalog["Database"], catalog["TableName"]) == (args.database, args.feature_table)
    (labels,) = resources_of_type(synthesized.template(env, "Training"), "AWS::Glue::Table").values()
    table = labels["Properties"]["TableInput"]
    assert (labels["Properties"]["DatabaseName"], table["Name"]) == (args.database, args.labels_table)
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == [
        schema.record_identifier.name,
        "label_time",
        schema.label.name,
    ]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["dataset"]
    assert table["Parameters"]["projection.dataset.type"] == "injected"
    root = f"s3://churn-{env}-raw-{settings.account}-eu-west-1/labels/"
    assert args.labels_root == root
    assert table["Parameters"]["storage.location.template"] == root + "${dataset}/"


def test_a_raw_source_pipeline_reads_the_raw_files(platform_config: PlatformConfig) -> None:
    """A new environment (training.source = "raw"): no training-set step, Preprocess reads InputDataUri."""
    import dataclasses

    from platform_constructs.pipeline_definition import PipelineInputs, build_definition

    settings = dataclasses.replace(platform_config.environment("dev").training, source="raw")
    inputs = PipelineInputs(
        region="eu-west-1",
        settings=settings,
        training_image="image",
        serving_image="serving",
        code_uri="s3://code/sourcedir.tar.gz",
        code_file="sourcedir.tar.gz",
        monitoring_code_uri="s3://code/monitoring.tar.gz",
        monitoring_config_uri="s3://code/monitoring-config.json",
        monitoring_config_file="monitoring-config.json",
        raw_data_uri="s3://raw/churn/",
        processed_uri="s3://processed/pipelines/p",
        model_artifacts_uri="s3://models/pipelines/p",
        checkpoints_uri="s3://models/checkpoints/p",
        baselines_uri="s3://monitoring/baselines/p",
        processing_role_arn="arn:aws:iam::123456789012:role/processing",
        training_role_arn="arn:aws:iam::123456789012:role/training",
        baseline_role_arn="arn:aws:iam::123456789012:role/baseline",
        data_key_arn="arn:aws:kms:eu-west-1:123456789012:key/data",
        model_key_arn="arn:aws:kms:eu-west-1:123456789012:key/model",
        subnet_ids=["subnet-1", "subnet-2"],
        security_group_ids=["sg-1"],
        model_package_group_name="churn-dev",
    )
    built = build_definition(inputs)
    assert [s["Name"] for s in built["Steps"]][:2] == ["Preprocess", "Train"]
    assert _raw_input(built["Steps"]) == {"Get": "Parameters.InputDataUri"}
    parameters = {p["Name"]: p["DefaultValue"] for p in built["Parameters"]}
    assert parameters["InputDataUri"] == "s3://raw/churn/"
    assert "LabelsUri" not in parameters
    with pytest.raises(ValueError, match=r"needs PipelineInputs\.training_set"):
        build_definition(dataclasses.replace(inputs, settings=dataclasses.replace(settings, source="feature_store")))


@pytest.mark.parametrize("env", ENVS)
def test_parameters_carry_the_environment_defaults(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env).training
    parameters = {p["Name"]: p for p in definition(synthesized, env)["Parameters"]}
    raw_bucket = f"s3://churn-{env}-raw-{platform_config.environment(env).account}-eu-west-1"
    if settings.source == "feature_store":
        assert parameters["LabelsUri"]["DefaultValue"] == f"{raw_bucket}/labels/{settings.labels_dataset}/"
        assert "InputDataUri" not in parameters  # a training set is built, not read from raw files
    else:
        assert parameters["InputDataUri"]["DefaultValue"] == f"{raw_bucket}/churn/"
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
def test_every_job_is_isolated_encrypted_and_in_the_vpc(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    jobs = [
        s for s in all_steps(definition(synthesized, env)["Steps"]) if s["Type"] in ("Processing", "Training", "Tuning")
    ]
    from_feature_store = platform_config.environment(env).training.source == "feature_store"
    assert len(jobs) == (5 if from_feature_store else 4)
    job_groups = set()
    for step in jobs:
        view = job_view(step)
        if step["Name"] == "BuildTrainingSet":
            # It calls Athena: the one unisolated job, in its own security group (checked below).
            assert view["isolation"] is False
            query_groups = view["vpc"]["SecurityGroupIds"]
        else:
            assert view["isolation"] is True, step["Name"]
            job_groups.add(json.dumps(view["vpc"]["SecurityGroupIds"]))
        assert view["encryption"] is True, step["Name"]
        assert len(view["vpc"]["Subnets"]) >= 2, step["Name"]
        assert view["vpc"]["SecurityGroupIds"], step["Name"]
        assert view["volume_key"].startswith("${"), step["Name"]
        assert view["output_key"].startswith("${"), step["Name"]
        assert view["max_runtime"], step["Name"]
    if from_feature_store:
        assert len(query_groups) == 1
        assert job_groups == {json.dumps(jobs[1]["Arguments"]["NetworkConfig"]["VpcConfig"]["SecurityGroupIds"])}
        assert json.dumps(query_groups) not in job_groups
        assert "QueryJobSecurityGroup" in query_groups[0]


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
def test_step_arguments_are_valid_sagemaker_api_requests(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
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
    # [build training set,] preprocess, train/tune, evaluate, baseline, register
    assert validated == (6 if platform_config.environment(env).training.source == "feature_store" else 5)


def _condition_keys(step: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The SageMaker IAM condition keys a job request sets (what the guardrails look at)."""
    view = job_view(step)
    args = step["Arguments"].get("TrainingJobDefinition", step["Arguments"])
    instance_type = (args.get("ResourceConfig") or args["ProcessingResources"]["ClusterConfig"])["InstanceType"]
    return {
        "sagemaker:InstanceTypes": [parameters[instance_type["Get"].removeprefix("Parameters.")]["DefaultValue"]],
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


def _denies(statement: dict[str, Any], action: str, keys: dict[str, Any]) -> bool:
    from tests.iam_eval import denies

    def rendered(value: Any) -> Any:
        return [rendered(v) for v in value] if isinstance(value, list) else _render(value)

    condition = {
        operator: {key: rendered(expected) for key, expected in checks.items()}
        for operator, checks in statement["Condition"].items()
    }
    keys = {k: _render(v) if k.endswith("KmsKey") and v is not None else v for k, v in keys.items()}
    return denies({**statement, "Condition": condition}, action, keys)


@pytest.mark.parametrize("env", ENVS)
def test_the_pipelines_own_jobs_pass_the_guardrails_its_roles_carry(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Training")
    guardrails = [
        p
        for k, p in resources_of_type(template, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("TrainingPipelineGuardrails")
    ]
    assert len(guardrails) == 2  # the guardrails and their storage and instance-type half
    statements = [s for policy in guardrails for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    parameters = {p["Name"]: p for p in definition(synthesized, env)["Parameters"]}
    actions = {
        "Processing": "sagemaker:CreateProcessingJob",
        "Training": "sagemaker:CreateTrainingJob",
        "Tuning": "sagemaker:CreateHyperParameterTuningJob",
    }
    checked = 0
    for step in all_steps(definition(synthesized, env)["Steps"]):
        if step["Type"] not in actions:
            continue
        keys = _condition_keys(step, parameters)
        for statement in statements:
            listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if actions[step["Type"]] in listed:
                assert not _denies(statement, actions[step["Type"]], keys), (
                    f"{statement['Sid']} would deny {step['Name']}"
                )
                checked += 1
    assert checked > 20
    # ... and unsafe requests would be denied: unisolated, or on an instance type outside the allowed list.
    unsafe = {**keys, "sagemaker:NetworkIsolation": False}
    assert any(_denies(s, "sagemaker:CreateProcessingJob", unsafe) for s in statements)
    elsewhere = {**keys, "sagemaker:InstanceTypes": ["ml.p5.48xlarge"]}
    assert any(_denies(s, "sagemaker:CreateProcessingJob", elsewhere) for s in statements)
    steps = {step["Name"]: step for step in all_steps(definition(synthesized, env)["Steps"])}
    if "BuildTrainingSet" in steps:
        # Unisolated is allowed in the query jobs' security group only, and for processing jobs only.
        processing, training = "sagemaker:CreateProcessingJob", "sagemaker:CreateTrainingJob"
        query_job = _condition_keys(steps["BuildTrainingSet"], parameters)
        assert not any(_denies(s, processing, query_job) for s in statements)
        preprocess_unisolated = {
            **_condition_keys(steps["Preprocess"], parameters),
            "sagemaker:NetworkIsolation": False,
        }
        assert any(_denies(s, processing, preprocess_unisolated) for s in statements)
        both_groups = {
            **query_job,
            "sagemaker:VpcSecurityGroupIds": [
                *query_job["sagemaker:VpcSecurityGroupIds"],
                *preprocess_unisolated["sagemaker:VpcSecurityGroupIds"],
            ],
        }
        assert any(_denies(s, processing, both_groups) for s in statements)
        assert any(_denies(s, processing, {**query_job, "sagemaker:NetworkIsolation": None}) for s in statements)
        assert any(_denies(s, training, query_job) for s in statements)  # a training job is never unisolated


@pytest.mark.parametrize("env", ENVS)
def test_roles_are_least_privilege(synthesized: Synthesized, platform_config: PlatformConfig, env: str) -> None:
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
            # processing, training, baseline [, training-set] roles only
            from_feature_store = platform_config.environment(env).training.source == "feature_store"
            assert len(statement["Resource"]) == (4 if from_feature_store else 3)
        else:
            assert name.startswith("FeatureIngestionPipelineRole")
            assert statement["Resource"] == {"Fn::GetAtt": [statement["Resource"]["Fn::GetAtt"][0], "Arn"]}
            assert statement["Resource"]["Fn::GetAtt"][0].startswith("FeatureIngestionIngestionRole")
    create_jobs = [name for name, s in statements if "sagemaker:CreateTrainingJob" in json.dumps(s["Action"])]
    assert len(create_jobs) == 1
    assert create_jobs[0].startswith("TrainingPipelinePipelineRole")


def test_only_the_training_set_role_may_query_and_only_in_the_features_workgroup(
    trains_from_the_feature_store: tuple[Synthesized, str], platform_config: PlatformConfig
) -> None:
    synthesized, env = trains_from_the_feature_store
    account = platform_config.environment(env).account
    statements = [
        (name, statement)
        for stack in ("Training", "Data", "Serving", "Operations")
        for name, p in resources_of_type(synthesized.template(env, stack), "AWS::IAM::ManagedPolicy").items()
        for statement in p["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]
    athena = [(n, s) for n, s in statements if "athena:" in json.dumps(s["Action"])]
    assert [n for n, _ in athena] == [n for n, _ in athena if n.startswith("TrainingPipelineTrainingSetRole")]
    ((_, query),) = athena
    assert "athena:StartQueryExecution" in query["Action"]
    assert query["Resource"] == f"arn:aws:athena:eu-west-1:{account}:workgroup/churn-{env}-features"
    role = [s for n, s in statements if n.startswith("TrainingPipelineTrainingSetRole")]
    glue = [s for s in role if "glue:" in json.dumps(s["Action"])]
    (tables,) = glue
    assert all(action.startswith("glue:Get") for action in tables["Action"])
    assert sorted(r.rsplit(":", 1)[1] for r in tables["Resource"]) == [
        "catalog",
        f"database/churn_{env}_features",
        f"table/churn_{env}_features/customers_v1",
        f"table/churn_{env}_features/labels",
    ]
    read = [r for s in role if s["Action"] == "s3:GetObject" for r in s["Resource"]]
    raw = f"arn:aws:s3:::churn-{env}-raw-{account}-eu-west-1"
    assert [r for r in read if r.startswith(raw)] == [f"{raw}/labels/*"]  # of the raw bucket: the labels only


@pytest.mark.parametrize("env", ENVS)
def test_retraining_is_scheduled_and_new_data_goes_through_the_batch_starter(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    template = synthesized.template(env, "Training")
    (schedule,) = resources_of_type(template, "AWS::Scheduler::Schedule").values()
    assert schedule["Properties"]["ScheduleExpression"] == settings.training.schedule
    pipeline_arn = f"arn:aws:sagemaker:eu-west-1:{settings.account}:pipeline/churn-{env}-training"
    ingestion_arn = pipeline_arn.replace("-training", "-ingest-features")
    assert schedule["Properties"]["Target"]["Arn"] == pipeline_arn
    rules = {k.split("BatchStarter", 1)[1][:-8]: r for k, r in resources_of_type(template, "AWS::Events::Rule").items()}
    assert set(rules) == {"NewDataRule", "PipelineStatusRule", "ResumeRule"}
    (function,) = [k for k in resources_of_type(template, "AWS::Lambda::Function") if k.startswith("BatchStarter")]
    for rule in rules.values():  # no rule starts a pipeline directly: every one goes to the batch starter
        assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [{"Fn::GetAtt": [function, "Arn"]}]
    new_data = rules["NewDataRule"]["Properties"]["EventPattern"]
    assert new_data["detail"]["bucket"]["name"] == [f"churn-{env}-raw-{settings.account}-eu-west-1"]
    assert new_data["detail"]["object"]["key"] == [{"wildcard": "churn/*_SUCCESS"}]
    status = rules["PipelineStatusRule"]["Properties"]["EventPattern"]
    assert status["detail"]["pipelineArn"] == [ingestion_arn, pipeline_arn]
    assert set(status["detail"]["currentPipelineExecutionStatus"]) == {"Executing", "Succeeded", "Failed", "Stopped"}
    permissions = resources_of_type(template, "AWS::Lambda::Permission")
    assert sorted(p["Properties"]["SourceArn"]["Fn::GetAtt"][0] for p in permissions.values()) == sorted(
        k for k in resources_of_type(template, "AWS::Events::Rule")
    )
    (lambda_function,) = [f for k, f in resources_of_type(template, "AWS::Lambda::Function").items() if k == function]
    assert lambda_function["Properties"]["ReservedConcurrentExecutions"] == 1  # claims are never raced
    variables = lambda_function["Properties"]["Environment"]["Variables"]
    assert variables["INGESTION_PIPELINE"] == f"churn-{env}-ingest-features"
    assert variables["TRAINING_PIPELINE"] == f"churn-{env}-training"
    assert variables["TRAINING_INPUT_PARAMETER"] == ("InputDataUri" if settings.training.source == "raw" else "")
    starters = {
        name: p["Properties"]["PolicyDocument"]["Statement"]
        for name, p in resources_of_type(template, "AWS::IAM::ManagedPolicy").items()
        if "StartPipelineExecution" in json.dumps(p)
    }
    assert sorted(name.split("Role")[0] for name in starters) == ["BatchStarterFunction", "RetrainingTriggersScheduler"]
    for name, statements in starters.items():
        (start,) = [s for s in statements if "sagemaker:StartPipelineExecution" in json.dumps(s["Action"])]
        if name.startswith("RetrainingTriggers"):
            assert start == {"Action": "sagemaker:StartPipelineExecution", "Effect": "Allow", "Resource": pipeline_arn}
        else:
            assert start["Action"] == ["sagemaker:ListPipelineExecutions", "sagemaker:StartPipelineExecution"]
            assert start["Resource"] == [ingestion_arn, pipeline_arn]
            manifest = [s for s in statements if "s3:PutObject" in json.dumps(s["Action"])]
            assert [s["Resource"] for s in manifest] == [
                f"arn:aws:s3:::churn-{env}-processed-{settings.account}-eu-west-1/batch-manifest/manifest.json"
            ]
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
