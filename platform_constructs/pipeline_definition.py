"""The SageMaker Pipeline definition of the training workflow, written as data, offline.

[BuildTrainingSet ->] Preprocess -> Train (or Tune) -> Evaluate -> CheckAuc -> [MonitoringBaselines -> RegisterModel]
                                                                            else [AucBelowThreshold (Fail)]

``BuildTrainingSet`` is there when ``training.source`` is ``feature_store``: it queries the offline
store in Athena for a point-in-time training set (training_code/build_training_set.py), which
Preprocess reads instead of the raw files.

The definition is the JSON the SageMaker Pipelines service executes (version 2020-12-01). Its step
arguments are the CreateProcessingJob / CreateTrainingJob / CreateHyperParameterTuningJob /
CreateModelPackage requests; ``tests/test_training_pipeline.py`` validates them against botocore's
SageMaker API model. Building it here, instead of with the SageMaker Python SDK, keeps synth offline
and deterministic: no role validation over the network, no code upload at definition time.

Values may be CDK tokens (bucket names, role ARNs, subnet IDs); the caller serializes the result
with ``Stack.to_json_string``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from config import TrainingSettings
from config.sagemaker_api import JobKind, instance_type_choices, instance_types, volume_kms_key_for

PIPELINE_FORMAT_VERSION = "2020-12-01"
PROCESSING = "/opt/ml/processing"
AUC_PATH = "binary_classification_metrics.auc.value"
FEATURE_SHARDS = 4  # files per training split: at least the largest instance count we expect

# Read from the training log: XGBoost's per-round evaluation lines and train.py's [final] line.
METRIC_DEFINITIONS = [
    {"Name": f"{split}:{metric}", "Regex": rf"{split}-{metric}:([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"}
    for split, metric in (
        ("train", "auc"),
        ("train", "logloss"),
        ("validation", "auc"),
        ("validation", "logloss"),
        ("validation", "accuracy"),
        ("validation", "f1"),
    )
]
OBJECTIVE_METRIC = "validation:auc"

STATIC_HYPERPARAMETERS = {
    "num_round": 500,
    "early_stopping_rounds": 30,
    "eval_metric": "auc,logloss",
    "tree_method": "hist",
    "checkpoint_frequency": 10,
    "nthread": 0,
    "seed": 42,
}
DEFAULT_TUNED_VALUES = {"max_depth": 6, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 1}
TUNING_RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.02", "MaxValue": "0.3", "ScalingType": "Logarithmic"},
        {"Name": "subsample", "MinValue": "0.6", "MaxValue": "1.0", "ScalingType": "Linear"},
        {"Name": "colsample_bytree", "MinValue": "0.5", "MaxValue": "1.0", "ScalingType": "Linear"},
        {"Name": "min_child_weight", "MinValue": "1", "MaxValue": "10", "ScalingType": "Linear"},
    ],
    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "3", "MaxValue": "10", "ScalingType": "Auto"}],
}
RETRY_ON_CAPACITY = [
    {
        "ExceptionType": ["SageMaker.CAPACITY_ERROR", "SageMaker.JOB_INTERNAL_ERROR", "SageMaker.RESOURCE_LIMIT"],
        "IntervalSeconds": 60,
        "BackoffRate": 2.0,
        "MaxAttempts": 3,
    }
]


@dataclass(frozen=True)
class PipelineInputs:
    """Everything the definition refers to; values may be CDK tokens."""

    region: str
    settings: TrainingSettings
    training_image: str
    serving_image: str
    code_uri: str  # s3:// URI of sourcedir.tar.gz
    code_file: str  # its object name, as it lands in the code input folder
    monitoring_code_uri: str  # s3:// URI of the monitoring bundle (monitoring_code/ + the feature schema)
    monitoring_config_uri: str  # s3:// URI of the environment's monitor.py/baseline.py config JSON
    monitoring_config_file: str  # its object name, as it lands in the config input folder
    raw_data_uri: str
    processed_uri: str  # s3:// prefix for splits and evaluations
    model_artifacts_uri: str
    checkpoints_uri: str
    baselines_uri: str
    processing_role_arn: str
    training_role_arn: str
    baseline_role_arn: str
    data_key_arn: str
    model_key_arn: str
    subnet_ids: list[str]
    security_group_ids: list[str]
    model_package_group_name: str
    training_set: TrainingSetInputs | None = None  # required when settings.source is "feature_store"
    # The environment's compute.allowed_instance_types (the instance-type parameters accept only these).
    allowed_instance_types: tuple[str, ...] = ()
    # Endpoint and batch transform types the registered model versions declare they support, on top
    # of the platform's CPU defaults.
    serving_instance_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingSetInputs:
    """What the BuildTrainingSet step queries and with which role; values may be CDK tokens."""

    role_arn: str
    security_group_ids: list[str]  # the query jobs' security group: the one unisolated jobs may use
    workgroup: str
    database: str
    feature_table: str
    labels_table: str
    labels_root_uri: str  # s3://<raw bucket>/labels/
    default_labels_uri: str  # s3://<raw bucket>/labels/<dataset>/


BUILD_TRAINING_SET = "BuildTrainingSet"
TRAINING_SET_REPORT = "training_set.json"


def get(path: str) -> dict[str, str]:
    return {"Get": path}


def join(*values: Any, on: str = "/") -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


EXECUTION_ID = get("Execution.PipelineExecutionId")
# Set on a tuning job's training jobs: train.py keeps its checkpoints under a folder named after its
# own training job, so the trials of one tuning job never resume from each other's checkpoints.
CHECKPOINT_PER_JOB_VARIABLE = "ML_PLATFORM_CHECKPOINT_PER_JOB"


def volume_key_field(instance_type: str, key: Any) -> dict[str, Any]:
    """``{"VolumeKmsKeyId": key}`` for an instance type with an EBS volume, nothing for one with local
    NVMe storage: SageMaker "You can't request a VolumeKmsKeyId when using an instance type with local
    storage." (ResourceConfig, ProcessingClusterConfig, TransformResources); the instance's hardware
    encrypts those volumes."""
    value = volume_kms_key_for(instance_type, key)
    return {} if value is None else {"VolumeKmsKeyId": value}


def instance_type_parameter(name: str, default: str, kind: JobKind, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A String parameter for an instance type that accepts only ``allowed`` types SageMaker takes for
    ``kind`` and that share ``default``'s storage (EBS or local NVMe): whether a request carries a
    volume KMS key is decided from the default at synth, so no run-time override can turn it into a
    request SageMaker refuses. Switching storage (e.g. CPU to a g5 GPU) is a config change and a deploy."""
    return {
        "Name": name,
        "Type": "String",
        "DefaultValue": default,
        "EnumValues": list(instance_type_choices(default, kind, allowed)),
    }


def _parameters(inputs: PipelineInputs) -> list[dict[str, Any]]:
    s = inputs.settings
    return [
        _data_parameter(inputs),
        instance_type_parameter(
            "ProcessingInstanceType", s.processing_instance_type, "processing", inputs.allowed_instance_types
        ),
        instance_type_parameter("TrainingInstanceType", s.instance_type, "training", inputs.allowed_instance_types),
        {"Name": "TrainingInstanceCount", "Type": "Integer", "DefaultValue": s.instance_count},
        {"Name": "AucThreshold", "Type": "Float", "DefaultValue": s.auc_threshold},
        {"Name": "MaxRuntimeSeconds", "Type": "Integer", "DefaultValue": s.max_runtime_seconds},
        *([{"Name": "MaxWaitSeconds", "Type": "Integer", "DefaultValue": s.max_wait_seconds}] if s.use_spot else []),
        {"Name": "ModelApprovalStatus", "Type": "String", "DefaultValue": "PendingManualApproval"},
    ]


def _data_parameter(inputs: PipelineInputs) -> dict[str, Any]:
    """Where the training data comes from: the labels of a feature-store training set, or raw files."""
    if inputs.settings.source == "feature_store":
        return {"Name": "LabelsUri", "Type": "String", "DefaultValue": _training_set(inputs).default_labels_uri}
    return {"Name": "InputDataUri", "Type": "String", "DefaultValue": inputs.raw_data_uri}


def _training_set(inputs: PipelineInputs) -> TrainingSetInputs:
    if inputs.training_set is None:
        raise ValueError("training.source = 'feature_store' needs PipelineInputs.training_set (the query's tables)")
    return inputs.training_set


def _processing_input(name: str, uri: Any, local: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "AppManaged": False,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def _processing_output(name: str, uri: Any, local: str) -> dict[str, Any]:
    return {
        "OutputName": name,
        "AppManaged": False,
        "S3Output": {"S3Uri": uri, "LocalPath": local, "S3UploadMode": "EndOfJob"},
    }


@dataclass(frozen=True)
class _JobContext:
    """What every processing job of a pipeline shares."""

    volume_size_gb: int
    key_arn: str
    subnet_ids: list[str]
    security_group_ids: list[str]
    isolated: bool = True
    instance_type: str = "ml.m5.xlarge"  # the ProcessingInstanceType default: decides the volume key field


def _context(inputs: PipelineInputs) -> _JobContext:
    return _JobContext(
        inputs.settings.volume_size_gb,
        inputs.data_key_arn,
        inputs.subnet_ids,
        inputs.security_group_ids,
        instance_type=inputs.settings.processing_instance_type,
    )


def _processing_job(
    context: _JobContext,
    *,
    image: str,
    role_arn: str,
    job_inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    entrypoint: list[str] | None = None,
    arguments: list[Any] | None = None,
    environment: dict[str, str] | None = None,
    max_runtime: int = 3600,
) -> dict[str, Any]:
    app: dict[str, Any] = {"ImageUri": image}
    if entrypoint:
        app["ContainerEntrypoint"] = entrypoint
    if arguments:
        app["ContainerArguments"] = arguments
    job: dict[str, Any] = {
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceType": get("Parameters.ProcessingInstanceType"),
                "InstanceCount": 1,
                "VolumeSizeInGB": context.volume_size_gb,
                **volume_key_field(context.instance_type, context.key_arn),
            }
        },
        "AppSpecification": app,
        "RoleArn": role_arn,
        "ProcessingInputs": job_inputs,
        "ProcessingOutputConfig": {"Outputs": outputs, "KmsKeyId": context.key_arn},
        "NetworkConfig": {
            "EnableNetworkIsolation": context.isolated,
            "EnableInterContainerTrafficEncryption": True,
            "VpcConfig": {"Subnets": context.subnet_ids, "SecurityGroupIds": context.security_group_ids},
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
    }
    if environment:
        job["Environment"] = environment
    return job


def _script(name: str) -> list[str]:
    """Unpack the code bundle and run one of its scripts; SageMaker appends ContainerArguments."""
    command = (
        f"mkdir -p {PROCESSING}/code && tar -xzf {PROCESSING}/input/code/*.gz -C {PROCESSING}/code "
        f'&& exec python3 {PROCESSING}/code/{name}.py "$@"'
    )
    return ["/bin/bash", "-c", command, name]


def _output_uri(inputs: PipelineInputs, name: str) -> dict[str, Any]:
    return join(inputs.processed_uri, EXECUTION_ID, name)


def _build_training_set(inputs: PipelineInputs) -> dict[str, Any]:
    """The point-in-time training set from the offline store, for the LabelsUri dataset (Athena).

    The job calls Athena, so it cannot be network-isolated: it runs in the isolated subnets in the
    query jobs' security group (the only one the guardrails let an unisolated job use) and reaches
    Athena and S3 through the VPC endpoints, with a role that may query one workgroup and read the
    offline store and the labels only.
    """
    source = _training_set(inputs)
    context = _JobContext(
        inputs.settings.volume_size_gb, inputs.data_key_arn, inputs.subnet_ids, source.security_group_ids, False
    )
    labels_uri = get("Parameters.LabelsUri")
    return {
        "Name": BUILD_TRAINING_SET,
        "Type": "Processing",
        "Arguments": _processing_job(
            context,
            image=inputs.training_image,
            role_arn=source.role_arn,
            entrypoint=_script("build_training_set"),
            arguments=[
                "--engine",
                "athena",
                "--labels-uri",
                labels_uri,
                "--labels-root",
                source.labels_root_uri,
                "--database",
                source.database,
                "--feature-table",
                source.feature_table,
                "--labels-table",
                source.labels_table,
                "--workgroup",
                source.workgroup,
                "--region",
                inputs.region,
            ],
            job_inputs=[
                _processing_input("code", inputs.code_uri, f"{PROCESSING}/input/code"),
                _processing_input("labels", labels_uri, f"{PROCESSING}/input/labels"),
            ],
            outputs=[
                _processing_output(
                    "training_set", _output_uri(inputs, "training-set"), f"{PROCESSING}/output/training_set"
                ),
                _processing_output("report", _output_uri(inputs, "training-set-report"), f"{PROCESSING}/output/report"),
            ],
        ),
        "RetryPolicies": RETRY_ON_CAPACITY,
    }


def _training_set_output(name: str) -> dict[str, str]:
    return get(f"Steps.{BUILD_TRAINING_SET}.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri")


def _training_data_uri(inputs: PipelineInputs) -> Any:
    """What Preprocess reads: the built training set, or the raw files of InputDataUri."""
    if inputs.settings.source == "feature_store":
        return _training_set_output("training_set")
    return get("Parameters.InputDataUri")


def _training_data_metadata(inputs: PipelineInputs) -> dict[str, Any]:
    """What the model version records about the data it learnt from (CustomerMetadataProperties)."""
    if inputs.settings.source == "feature_store":
        return {
            "TrainingSource": "feature_store",
            "LabelsUri": get("Parameters.LabelsUri"),
            # The query text, the query execution, the label files and the row counts.
            "TrainingSetReport": join(_training_set_output("report"), TRAINING_SET_REPORT),
        }
    return {"TrainingSource": "raw", "InputDataUri": get("Parameters.InputDataUri")}


def _preprocess(inputs: PipelineInputs) -> dict[str, Any]:
    return {
        "Name": "Preprocess",
        "Type": "Processing",
        "Arguments": _processing_job(
            _context(inputs),
            image=inputs.training_image,
            role_arn=inputs.processing_role_arn,
            entrypoint=_script("preprocess"),
            arguments=["--shards", str(FEATURE_SHARDS)],
            job_inputs=[
                _processing_input("code", inputs.code_uri, f"{PROCESSING}/input/code"),
                _processing_input("raw", _training_data_uri(inputs), f"{PROCESSING}/input/raw"),
            ],
            outputs=[
                _processing_output(name, _output_uri(inputs, name), f"{PROCESSING}/output/{name}")
                for name in ("train", "validation", "test", "baseline")
            ],
        ),
        "RetryPolicies": RETRY_ON_CAPACITY,
    }


def _split_uri(name: str) -> dict[str, str]:
    return get(f"Steps.Preprocess.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri")


def _channel(name: str, uri: Any, *, sharded: bool, content_type: str = "text/csv") -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "ShardedByS3Key" if sharded else "FullyReplicated",
            }
        },
        "ContentType": content_type,
        "InputMode": "File",
    }


def _hyperparameters(inputs: PipelineInputs, *, tuned: bool) -> dict[str, str]:
    values: dict[str, Any] = {**STATIC_HYPERPARAMETERS, "device": inputs.settings.device}
    if not tuned:
        values.update(DEFAULT_TUNED_VALUES)
    # Script mode: the framework container unpacks and runs the code from the "code" channel
    # (network isolation keeps it from fetching anything itself). Values are JSON, as the SDK writes them.
    framework = {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": f"/opt/ml/input/data/code/{inputs.code_file}",
        "sagemaker_container_log_level": 20,
        "sagemaker_region": inputs.region,
    }
    return {name: json.dumps(value) for name, value in sorted({**values, **framework}.items())}


def _training_definition(inputs: PipelineInputs) -> dict[str, Any]:
    """The fields a training job and a tuning job's training definition share."""
    s = inputs.settings
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": get("Parameters.MaxRuntimeSeconds")}
    definition: dict[str, Any] = {
        "RoleArn": inputs.training_role_arn,
        "InputDataConfig": [
            _channel("train", _split_uri("train"), sharded=True),
            _channel("validation", _split_uri("validation"), sharded=True),
            _channel("code", inputs.code_uri, sharded=False, content_type="application/x-gzip"),
        ],
        "OutputDataConfig": {"S3OutputPath": inputs.model_artifacts_uri, "KmsKeyId": inputs.model_key_arn},
        "ResourceConfig": {
            "InstanceType": get("Parameters.TrainingInstanceType"),
            "InstanceCount": get("Parameters.TrainingInstanceCount"),
            "VolumeSizeInGB": s.volume_size_gb,
            **volume_key_field(s.instance_type, inputs.model_key_arn),
        },
        "StoppingCondition": stopping,
        "VpcConfig": {"Subnets": inputs.subnet_ids, "SecurityGroupIds": inputs.security_group_ids},
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": s.use_spot,
    }
    if s.use_spot:
        stopping["MaxWaitTimeInSeconds"] = get("Parameters.MaxWaitSeconds")
        definition["CheckpointConfig"] = {
            "S3Uri": join(inputs.checkpoints_uri, EXECUTION_ID),
            "LocalPath": "/opt/ml/checkpoints",
        }
    return definition


def _algorithm(inputs: PipelineInputs) -> dict[str, Any]:
    return {
        "TrainingImage": inputs.training_image,
        "TrainingInputMode": "File",
        "MetricDefinitions": METRIC_DEFINITIONS,
    }


def _train(inputs: PipelineInputs) -> tuple[dict[str, Any], Any]:
    """The Train or Tune step and the S3 URI of the model it produces."""
    definition = _training_definition(inputs)
    if not inputs.settings.tuning.enabled:
        step = {
            "Name": "Train",
            "Type": "Training",
            "Arguments": {
                # Time-series metrics exist for training jobs only (not in a tuning job's definition).
                "AlgorithmSpecification": {**_algorithm(inputs), "EnableSageMakerMetricsTimeSeries": True},
                "HyperParameters": _hyperparameters(inputs, tuned=False),
                **definition,
            },
            "RetryPolicies": RETRY_ON_CAPACITY,
        }
        return step, get("Steps.Train.ModelArtifacts.S3ModelArtifacts")
    tuning = inputs.settings.tuning
    step = {
        "Name": "Tune",
        "Type": "Tuning",
        "Arguments": {
            "HyperParameterTuningJobConfig": {
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE_METRIC},
                "ResourceLimits": {
                    "MaxNumberOfTrainingJobs": tuning.max_jobs,
                    "MaxParallelTrainingJobs": tuning.max_parallel_jobs,
                },
                "ParameterRanges": TUNING_RANGES,
                "TrainingJobEarlyStoppingType": "Auto",
            },
            "TrainingJobDefinition": {
                "AlgorithmSpecification": _algorithm(inputs),
                "StaticHyperParameters": _hyperparameters(inputs, tuned=True),
                **definition,
                # One checkpoint folder per trial (under the execution's checkpoint prefix).
                "Environment": {CHECKPOINT_PER_JOB_VARIABLE: "true"},
            },
        },
        "RetryPolicies": RETRY_ON_CAPACITY,
    }
    best_model = join(
        inputs.model_artifacts_uri, get("Steps.Tune.BestTrainingJob.TrainingJobName"), "output", "model.tar.gz"
    )
    return step, best_model


def _evaluate(inputs: PipelineInputs, model_uri: Any, after: str) -> dict[str, Any]:
    return {
        "Name": "Evaluate",
        "Type": "Processing",
        "DependsOn": [after],
        "Arguments": _processing_job(
            _context(inputs),
            image=inputs.training_image,
            role_arn=inputs.processing_role_arn,
            entrypoint=_script("evaluate"),
            job_inputs=[
                _processing_input("code", inputs.code_uri, f"{PROCESSING}/input/code"),
                _processing_input("model", model_uri, f"{PROCESSING}/input/model"),
                _processing_input("test", _split_uri("test"), f"{PROCESSING}/input/test"),
            ],
            outputs=[
                _processing_output("evaluation", _output_uri(inputs, "evaluation"), f"{PROCESSING}/output/evaluation")
            ],
        ),
        "PropertyFiles": [
            {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
        ],
        "RetryPolicies": RETRY_ON_CAPACITY,
    }


def _test_auc() -> dict[str, Any]:
    return {"Std:JsonGet": {"PropertyFile": get("Steps.Evaluate.PropertyFiles.EvaluationReport"), "Path": AUC_PATH}}


BASELINE_STEP = "MonitoringBaselines"
# baseline.py's output files (monitoring_code/CONTRACT.md) and what the model package registers them as.
BASELINE_FILES = {
    "data_quality_statistics": "data_quality/statistics.json",
    "data_quality_constraints": "data_quality/constraints.json",
    "model_quality_statistics": "model_quality/statistics.json",
    "model_quality_constraints": "model_quality/constraints.json",
    "bias_analysis": "bias/analysis.json",
    "bias_config": "bias/analysis_config.json",
    "attribution_analysis": "attribution/analysis.json",
    "attribution_config": "attribution/analysis_config.json",
}


def _baseline(inputs: PipelineInputs, model_uri: Any) -> dict[str, Any]:
    """baseline.py (monitoring_code/) in the XGBoost image: all four monitoring baselines of the version.

    Model Monitor's analyzer is closed to new customers, so the baselines are computed by the
    platform's own code, network-isolated like every other job; the files keep Model Monitor's and
    Clarify's formats, so the native backend can use them too.
    """
    local = f"{PROCESSING}/input"
    evaluation = get("Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri")
    return {
        "Name": BASELINE_STEP,
        "Type": "Processing",
        "Arguments": _processing_job(
            _context(inputs),
            image=inputs.training_image,
            role_arn=inputs.baseline_role_arn,
            entrypoint=_script("baseline"),
            arguments=[
                "--baseline-data",
                f"{local}/baseline",
                "--model",
                f"{local}/model",
                "--test-data",
                f"{local}/test",
                "--evaluation",
                f"{local}/evaluation",
                "--config",
                f"{local}/config/{inputs.monitoring_config_file}",
                "--output",
                f"{PROCESSING}/output/baselines",
            ],
            job_inputs=[
                _processing_input("code", inputs.monitoring_code_uri, f"{local}/code"),
                _processing_input("config", inputs.monitoring_config_uri, f"{local}/config"),
                _processing_input("baseline", _split_uri("baseline"), f"{local}/baseline"),
                _processing_input("model", model_uri, f"{local}/model"),
                _processing_input("test", _split_uri("test"), f"{local}/test"),
                _processing_input("evaluation", evaluation, f"{local}/evaluation"),
            ],
            outputs=[
                _processing_output(
                    "baselines", join(inputs.baselines_uri, EXECUTION_ID), f"{PROCESSING}/output/baselines"
                )
            ],
        ),
        "RetryPolicies": RETRY_ON_CAPACITY,
    }


def _baseline_file(name: str) -> dict[str, Any]:
    baselines = get(f"Steps.{BASELINE_STEP}.ProcessingOutputConfig.Outputs['baselines'].S3Output.S3Uri")
    return {"ContentType": "application/json", "S3Uri": join(baselines, BASELINE_FILES[name])}


def _register(inputs: PipelineInputs, model_uri: Any) -> dict[str, Any]:
    evaluation = join(
        get("Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"), "evaluation.json"
    )
    serving_types = {"ml.m5.large", "ml.m5.xlarge", "ml.c5.large", "ml.c5.xlarge", "ml.c5.2xlarge"}
    serving_types |= set(inputs.serving_instance_types)
    realtime_types = sorted(t for t in serving_types if t in instance_types("hosting"))
    transform_types = sorted(t for t in serving_types if t in instance_types("transform"))
    return {
        "Name": "RegisterModel",
        "Type": "RegisterModel",
        "DependsOn": [BASELINE_STEP],
        "Arguments": {
            "ModelPackageGroupName": inputs.model_package_group_name,
            "ModelPackageDescription": "Churn XGBoost model trained and evaluated by the training pipeline",
            "ModelApprovalStatus": get("Parameters.ModelApprovalStatus"),
            "InferenceSpecification": {
                "Containers": [{"Image": inputs.serving_image, "ModelDataUrl": model_uri, "Framework": "XGBOOST"}],
                "SupportedContentTypes": ["text/csv", "application/json"],
                "SupportedResponseMIMETypes": ["text/csv", "application/json", "application/jsonlines"],
                "SupportedRealtimeInferenceInstanceTypes": realtime_types,
                "SupportedTransformInstanceTypes": transform_types,
            },
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": evaluation},
                    "Constraints": _baseline_file("model_quality_constraints"),
                },
                "ModelDataQuality": {
                    "Statistics": _baseline_file("data_quality_statistics"),
                    "Constraints": _baseline_file("data_quality_constraints"),
                },
                "Bias": {"PostTrainingReport": _baseline_file("bias_analysis")},
                "Explainability": {"Report": _baseline_file("attribution_analysis")},
            },
            # What monitoring compares the version with (monitoring_code/CONTRACT.md, section 1).
            "DriftCheckBaselines": {
                "ModelDataQuality": {
                    "Statistics": _baseline_file("data_quality_statistics"),
                    "Constraints": _baseline_file("data_quality_constraints"),
                },
                "ModelQuality": {
                    "Statistics": _baseline_file("model_quality_statistics"),
                    "Constraints": _baseline_file("model_quality_constraints"),
                },
                "Bias": {
                    "ConfigFile": _baseline_file("bias_config"),
                    "PostTrainingConstraints": _baseline_file("bias_analysis"),
                },
                "Explainability": {
                    "ConfigFile": _baseline_file("attribution_config"),
                    "Constraints": _baseline_file("attribution_analysis"),
                },
            },
            "CustomerMetadataProperties": {
                "PipelineExecutionArn": get("Execution.PipelineExecutionArn"),
                **_training_data_metadata(inputs),
            },
        },
    }


def _fail() -> dict[str, Any]:
    message = join(
        "Test AUC",
        _test_auc(),
        "is below the threshold",
        get("Parameters.AucThreshold"),
        "- nothing was registered.",
        on=" ",
    )
    return {"Name": "AucBelowThreshold", "Type": "Fail", "Arguments": {"ErrorMessage": message}}


def build_definition(inputs: PipelineInputs) -> dict[str, Any]:
    """The whole pipeline definition (a JSON-ready dict, possibly holding CDK tokens)."""
    train, model_uri = _train(inputs)
    check = {
        "Name": "CheckAuc",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {"Type": "GreaterThanOrEqualTo", "LeftValue": _test_auc(), "RightValue": get("Parameters.AucThreshold")}
            ],
            "IfSteps": [_baseline(inputs, model_uri), _register(inputs, model_uri)],
            "ElseSteps": [_fail()],
        },
    }
    return {
        "Version": PIPELINE_FORMAT_VERSION,
        "Metadata": {},
        "Parameters": _parameters(inputs),
        "PipelineExperimentConfig": {
            "ExperimentName": get("Execution.PipelineName"),
            "TrialName": get("Execution.PipelineExecutionId"),
        },
        "Steps": [
            *([_build_training_set(inputs)] if inputs.settings.source == "feature_store" else []),
            _preprocess(inputs),
            train,
            _evaluate(inputs, model_uri, train["Name"]),
            check,
        ],
    }


# --- feature ingestion ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestionInputs:
    """Everything the feature-ingestion pipeline refers to; values may be CDK tokens."""

    region: str
    settings: TrainingSettings  # processing instance type and volume size
    image: str
    code_uri: str
    raw_data_uri: str
    report_uri: str  # s3:// prefix for the ingestion reports
    role_arn: str
    data_key_arn: str
    subnet_ids: list[str]
    security_group_ids: list[str]
    feature_group_name: str
    max_reject_fraction: float
    allowed_instance_types: tuple[str, ...] = ()


def build_ingestion_definition(inputs: IngestionInputs) -> dict[str, Any]:
    """IngestFeatures: raw data -> PutRecord into the feature group (training_code/ingest.py).

    The job calls the Feature Store runtime, so it cannot be network-isolated: it runs in the
    isolated subnets and reaches AWS only through the VPC endpoints.
    """
    context = _JobContext(
        inputs.settings.volume_size_gb,
        inputs.data_key_arn,
        inputs.subnet_ids,
        inputs.security_group_ids,
        False,
        instance_type=inputs.settings.processing_instance_type,
    )
    step = {
        "Name": "IngestFeatures",
        "Type": "Processing",
        "Arguments": _processing_job(
            context,
            image=inputs.image,
            role_arn=inputs.role_arn,
            entrypoint=_script("ingest"),
            arguments=[
                "--feature-group",
                inputs.feature_group_name,
                "--region",
                inputs.region,
                "--max-reject-fraction",
                repr(inputs.max_reject_fraction),
            ],
            job_inputs=[
                _processing_input("code", inputs.code_uri, f"{PROCESSING}/input/code"),
                _processing_input("raw", get("Parameters.InputDataUri"), f"{PROCESSING}/input/raw"),
            ],
            outputs=[
                _processing_output(
                    "report", join(inputs.report_uri, EXECUTION_ID, "report"), f"{PROCESSING}/output/report"
                )
            ],
        ),
        "RetryPolicies": RETRY_ON_CAPACITY,
    }
    return {
        "Version": PIPELINE_FORMAT_VERSION,
        "Metadata": {},
        "Parameters": [
            {"Name": "InputDataUri", "Type": "String", "DefaultValue": inputs.raw_data_uri},
            instance_type_parameter(
                "ProcessingInstanceType",
                inputs.settings.processing_instance_type,
                "processing",
                inputs.allowed_instance_types,
            ),
        ],
        "Steps": [step],
    }
