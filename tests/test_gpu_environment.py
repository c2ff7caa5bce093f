"""A fourth environment, in another account and region, on GPU instances with local NVMe storage:
distributed GPU training and tuning, GPU processing, GPU serving with a linear rollout. It synthesizes
through every gate (cdk-nag, MlPlatform, SageMakerApi, the guards, cfn-lint, checkov) to requests the
SageMaker API accepts, or config refuses it naming the field. Its config lives here, not in the
shipped file."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app import build_app
from config import ConfigError, PlatformConfig, parse_config
from config.sagemaker_api import has_local_storage
from policy.ml_platform_rules import parse_pipeline_definition
from policy.scanners import cfn_lint, checkov
from tests.conftest import resources_of_type, walk
from tests.iam_eval import denies

pytestmark = pytest.mark.slow

GPU_CONFIG: dict[str, Any] = {
    "project": "churn",
    "tags": {"Project": "ml-platform", "Owner": "ml-platform-team"},
    "tooling": {"account": "111111111111", "region": "eu-west-1"},
    "environments": [
        {
            "name": "gpu",
            "account": "555555555555",
            "region": "us-west-2",
            "availability_zones": ["us-west-2a", "us-west-2b"],
            "removal_policy": "retain",
            "network": {"vpc_cidr": "10.40.0.0/16", "subnet_prefix_length": 20},
            "training": {
                "instance_type": "ml.g5.2xlarge",
                "instance_count": 2,
                "processing_instance_type": "ml.g4dn.xlarge",
                "use_spot": True,
                "max_runtime_seconds": 3600,
                "max_wait_seconds": 7200,
                "tuning": {"enabled": True, "max_jobs": 6, "max_parallel_jobs": 2},
            },
            "serving": {
                "inference_type": "realtime",
                "instance_type": "ml.g5.xlarge",
                "initial_instance_count": 2,
                "min_capacity": 2,
                "max_capacity": 4,
                "deployment": "linear",
                "linear_step_percent": 25,
                "variants": [{"name": "Champion", "weight": 0.9}, {"name": "Challenger", "weight": 0.1}],
            },
            "operations": {"alert_emails": ["gpu-oncall@example.com"], "monthly_budget_usd": 8000},
            # GPU for training, processing and serving; the monitoring job is CPU code (ml.m5.xlarge).
            "compute": {"allowed_instance_types": ["ml.g5.*", "ml.g4dn.*", "ml.m5.xlarge"]},
        }
    ],
}


@dataclass(frozen=True)
class GpuSynth:
    config: PlatformConfig
    outdir: Path
    templates: dict[str, dict[str, Any]]  # by stack id: Gpu/Data, ...
    paths: dict[str, Path]


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory) -> GpuSynth:
    config = parse_config(copy.deepcopy(GPU_CONFIG))
    outdir = tmp_path_factory.mktemp("cdk.out.gpu")
    try:
        assembly = build_app(config, ["gpu"], outdir=str(outdir)).synth()  # every policy pack registered
    except Exception as error:  # noqa: BLE001  (jsii raises a plain Exception carrying the report)
        pytest.fail(f"the GPU environment failed a synth gate:\n{error}", pytrace=False)
    templates = {s.hierarchical_id: s.template for s in assembly.stacks_recursively}
    paths = {s.hierarchical_id: Path(s.template_full_path) for s in assembly.stacks_recursively}
    return GpuSynth(config, outdir, templates, paths)


def _pipelines(gpu: GpuSynth) -> dict[str, dict[str, Any]]:
    found = {}
    for template in gpu.templates.values():
        for resource in resources_of_type(template, "AWS::SageMaker::Pipeline").values():
            parsed = parse_pipeline_definition(resource)
            assert parsed is not None
            found[resource["Properties"]["PipelineName"]] = dict(parsed)
    return found


def test_every_gate_passes(gpu: GpuSynth) -> None:
    report = json.loads((gpu.outdir / "validation-report.json").read_text())
    assert all(r["conclusion"] == "success" for r in report["pluginReports"]), report
    assert [v for r in report["pluginReports"] for v in r["violations"]] == []
    assert cfn_lint([(path, "us-west-2") for path in gpu.paths.values()]) == []
    assert checkov(gpu.outdir).failed == []


def test_no_volume_key_on_local_storage_jobs_and_a_bounded_instance_type(gpu: GpuSynth) -> None:
    pipelines = _pipelines(gpu)
    assert set(pipelines) == {
        "churn-gpu-training",
        "churn-gpu-ingest-features",
        "churn-gpu-batch-scoring",
        "churn-gpu-monitoring",
    }
    for name, definition in pipelines.items():
        text = json.dumps(definition)
        # The monitoring job is CPU code on an EBS type (monitoring.instance_type): its volume keeps the key.
        local = name != "churn-gpu-monitoring"
        # g5, g4dn: hardware-encrypted NVMe, a key is refused
        assert ("VolumeKmsKeyId" in text) is not local, name
        assert "KmsKeyId" in text, name  # outputs stay encrypted with the platform's keys
        for parameter in definition["Parameters"]:
            if parameter["Name"].endswith("InstanceType"):
                assert parameter["EnumValues"], (name, parameter)
                assert all(has_local_storage(t) is local for t in parameter["EnumValues"]), (name, parameter)
                families = ("ml.g5.", "ml.g4dn.") if local else ("ml.m5.xlarge",)
                assert all(t.startswith(families) for t in parameter["EnumValues"])
    training = pipelines["churn-gpu-training"]
    parameters = {p["Name"]: p["DefaultValue"] for p in training["Parameters"]}
    assert parameters["TrainingInstanceType"] == "ml.g5.2xlarge"
    assert parameters["TrainingInstanceCount"] == 2
    (tune,) = [s for s in training["Steps"] if s["Type"] == "Tuning"]
    job = tune["Arguments"]["TrainingJobDefinition"]
    assert job["Environment"] == {"ML_PLATFORM_CHECKPOINT_PER_JOB": "true"}  # one checkpoint folder per trial
    assert json.loads(job["StaticHyperParameters"]["device"]) == "auto"  # CUDA on the GPU
    assert job["EnableManagedSpotTraining"] is True
    register = next(s for s in walk(training) if isinstance(s, dict) and s.get("Type") == "RegisterModel")
    spec = register["Arguments"]["InferenceSpecification"]
    assert "ml.g5.xlarge" in spec["SupportedRealtimeInferenceInstanceTypes"]
    assert "ml.g5.xlarge" in spec["SupportedTransformInstanceTypes"]


def test_gpu_serving_has_no_volume_key_and_rolls_out_linearly(gpu: GpuSynth) -> None:
    serving = gpu.templates["Gpu/Serving"]
    (config,) = resources_of_type(serving, "AWS::SageMaker::EndpointConfig").values()
    assert "KmsKeyId" not in config["Properties"]
    assert {v["InstanceType"] for v in config["Properties"]["ProductionVariants"]} == {"ml.g5.xlarge"}
    assert config["Properties"]["DataCaptureConfig"]["KmsKeyId"]  # captured data stays encrypted
    (endpoint,) = resources_of_type(serving, "AWS::SageMaker::Endpoint").values()
    routing = endpoint["Properties"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "LINEAR"
    assert routing["LinearStepSize"] == {"Type": "CAPACITY_PERCENT", "Value": 25}


def test_the_guardrails_let_the_gpu_jobs_through_and_still_deny_an_ebs_volume_without_key(gpu: GpuSynth) -> None:
    training = gpu.templates["Gpu/Training"]
    statements = [
        s
        for key, policy in resources_of_type(training, "AWS::IAM::ManagedPolicy").items()
        if key.startswith("TrainingPipelineGuardrails")
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    request = {
        "sagemaker:VpcSubnets": ["subnet-1"],
        "sagemaker:VpcSecurityGroupIds": ["sg-1"],
        "sagemaker:NetworkIsolation": True,
        "sagemaker:InterContainerTrafficEncryption": True,
        "sagemaker:OutputKmsKey": "placeholder",
        "sagemaker:InstanceTypes": ["ml.g5.2xlarge"],
    }
    output_keys = [s for s in statements if s["Sid"] == "DenyForeignOutputKey"]
    request["sagemaker:OutputKmsKey"] = output_keys[0]["Condition"]["ArnNotEquals"]["sagemaker:OutputKmsKey"][0]
    for action in ("sagemaker:CreateTrainingJob", "sagemaker:CreateHyperParameterTuningJob"):
        assert [s["Sid"] for s in statements if denies(s, action, request)] == [], action
    ebs = {**request, "sagemaker:InstanceTypes": ["ml.m5.2xlarge"]}
    assert {s["Sid"] for s in statements if denies(s, "sagemaker:CreateTrainingJob", ebs)} == {
        "DenyVolumeKeyUnset",  # an EBS volume without the platform key
        "DenyInstanceTypesNotAllowed",  # and m5.2xlarge is not allowed in this environment
    }


def test_the_environment_has_a_budget_and_a_subscribed_alarm_topic(gpu: GpuSynth) -> None:
    operations = gpu.templates["Gpu/Operations"]
    (budget,) = resources_of_type(operations, "AWS::Budgets::Budget").values()
    assert budget["Properties"]["Budget"]["BudgetLimit"] == {"Amount": 8000, "Unit": "USD"}
    (subscription,) = resources_of_type(operations, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Endpoint"] == "gpu-oncall@example.com"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"processing_instance_type": "ml.p4d.24xlarge"}, "training.processing_instance_type", "processing jobs"),
        ({"instance_type": "ml.g6.2xlarge"}, "compute.allowed_instance_types", "does not allow ml.g6.2xlarge"),
        ({"device": "cpu"}, "training.device", "GPU instance"),
    ],
)
def test_what_sagemaker_would_refuse_is_refused_at_synth_naming_the_field(
    change: dict[str, Any], field: str, words: str
) -> None:
    data = copy.deepcopy(GPU_CONFIG)
    data["environments"][0]["training"].update(change)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.field_path == f"environments[0].{field}"
    assert words in str(caught.value)
