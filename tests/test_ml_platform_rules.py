"""Each of the project's own SageMaker rules: one compliant and one non-compliant resource."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from policy.ml_platform_rules import RULES, RULES_BY_ID, check_template

VPC = {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
KEY = {"Fn::GetAtt": ["Key", "Arn"]}

MODEL = {
    "Type": "AWS::SageMaker::Model",
    "Properties": {"EnableNetworkIsolation": True, "VpcConfig": VPC, "PrimaryContainer": {"Image": "i"}},
}
ENDPOINT_CONFIG = {
    "Type": "AWS::SageMaker::EndpointConfig",
    "Properties": {
        "KmsKeyId": KEY,
        "ProductionVariants": [
            {"VariantName": "Champion", "InitialInstanceCount": 2, "InstanceType": "ml.m5.large"},
            {"VariantName": "Challenger", "InitialInstanceCount": 2, "InstanceType": "ml.m5.large"},
        ],
        "DataCaptureConfig": {"EnableCapture": True, "KmsKeyId": KEY, "InitialSamplingPercentage": 20},
    },
}
MONITORING_JOB = {
    "Type": "AWS::SageMaker::DataQualityJobDefinition",
    "Properties": {
        "NetworkConfig": {
            "EnableNetworkIsolation": True,
            "EnableInterContainerTrafficEncryption": True,
            "VpcConfig": VPC,
        },
        "JobResources": {"ClusterConfig": {"VolumeKmsKeyId": KEY, "InstanceCount": 1}},
        "DataQualityJobOutputConfig": {"KmsKeyId": KEY},
    },
}
FEATURE_GROUP = {
    "Type": "AWS::SageMaker::FeatureGroup",
    "Properties": {
        "OnlineStoreConfig": {"EnableOnlineStore": True, "SecurityConfig": {"KmsKeyId": KEY}},
        "OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": "s3://b/p", "KmsKeyId": KEY}},
    },
}
TRAINING_STEP = {
    "Name": "Train",
    "Type": "Training",
    "Arguments": {
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": VPC,
        "ResourceConfig": {"VolumeKmsKeyId": "{{key}}"},
        "OutputDataConfig": {"KmsKeyId": "{{key}}"},
    },
}
PROCESSING_STEP = {
    "Name": "Preprocess",
    "Type": "Processing",
    "Arguments": {
        "NetworkConfig": {
            "EnableNetworkIsolation": True,
            "EnableInterContainerTrafficEncryption": True,
            "VpcConfig": VPC,
        },
        "ProcessingResources": {"ClusterConfig": {"VolumeKmsKeyId": "{{key}}"}},
        "ProcessingOutputConfig": {"KmsKeyId": "{{key}}"},
    },
}


MODEL_STEP = {
    "Name": "CreateModel",
    "Type": "Model",
    "Arguments": {"EnableNetworkIsolation": True, "VpcConfig": VPC, "PrimaryContainer": {"ModelPackageName": "p"}},
}


def pipeline(*steps: dict[str, Any], as_join: bool = False) -> dict[str, Any]:
    """A pipeline resource; with ``as_join`` the body is an Fn::Join with tokens, as CDK writes it."""
    body = json.dumps({"Version": "2020-12-01", "Steps": list(steps)})
    if as_join:
        head, _, tail = body.partition("{{key}}")
        rendered: Any = {"Fn::Join": ["", [head, KEY, tail]]}
    else:
        rendered = body
    return {
        "Type": "AWS::SageMaker::Pipeline",
        "Properties": {"PipelineDefinition": {"PipelineDefinitionBody": rendered}},
    }


def condition_step(*if_steps: dict[str, Any]) -> dict[str, Any]:
    return {"Name": "CheckAuc", "Type": "Condition", "Arguments": {"Conditions": [], "IfSteps": list(if_steps)}}


def broken(resource: dict[str, Any], path: str, value: Any = None) -> dict[str, Any]:
    """A copy of ``resource`` with the dotted ``path`` removed (value None) or set."""
    result = copy.deepcopy(resource)
    node = result
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return result


CASES = [
    ("ModelNetworkIsolation", MODEL, broken(MODEL, "Properties.EnableNetworkIsolation", False)),
    ("ModelNetworkIsolation", MODEL, broken(MODEL, "Properties.EnableNetworkIsolation")),
    ("ModelInVpc", MODEL, broken(MODEL, "Properties.VpcConfig")),
    (
        "EndpointMultiInstance",
        ENDPOINT_CONFIG,
        broken(ENDPOINT_CONFIG, "Properties.ProductionVariants.1.InitialInstanceCount", 1),
    ),
    ("EndpointConfigKms", ENDPOINT_CONFIG, broken(ENDPOINT_CONFIG, "Properties.KmsKeyId")),
    ("EndpointDataCapture", ENDPOINT_CONFIG, broken(ENDPOINT_CONFIG, "Properties.DataCaptureConfig")),
    ("EndpointDataCapture", ENDPOINT_CONFIG, broken(ENDPOINT_CONFIG, "Properties.DataCaptureConfig.KmsKeyId")),
    (
        "JobNetworkIsolation",
        MONITORING_JOB,
        broken(MONITORING_JOB, "Properties.NetworkConfig.EnableNetworkIsolation", False),
    ),
    (
        "JobInterContainerEncryption",
        MONITORING_JOB,
        broken(MONITORING_JOB, "Properties.NetworkConfig.EnableInterContainerTrafficEncryption"),
    ),
    ("JobKms", MONITORING_JOB, broken(MONITORING_JOB, "Properties.JobResources.ClusterConfig.VolumeKmsKeyId")),
    ("JobKms", MONITORING_JOB, broken(MONITORING_JOB, "Properties.DataQualityJobOutputConfig.KmsKeyId")),
    ("JobInVpc", MONITORING_JOB, broken(MONITORING_JOB, "Properties.NetworkConfig.VpcConfig")),
    ("FeatureGroupKms", FEATURE_GROUP, broken(FEATURE_GROUP, "Properties.OnlineStoreConfig.SecurityConfig")),
    ("FeatureGroupKms", FEATURE_GROUP, broken(FEATURE_GROUP, "Properties.OfflineStoreConfig.S3StorageConfig.KmsKeyId")),
    # Pipeline steps, including steps nested in a condition and bodies CDK renders as Fn::Join.
    (
        "JobNetworkIsolation",
        pipeline(TRAINING_STEP, as_join=True),
        pipeline(broken(TRAINING_STEP, "Arguments.EnableNetworkIsolation", False), as_join=True),
    ),
    (
        "JobNetworkIsolation",
        pipeline(PROCESSING_STEP),
        pipeline(broken(PROCESSING_STEP, "Arguments.NetworkConfig.EnableNetworkIsolation", False)),
    ),
    (
        "JobInterContainerEncryption",
        pipeline(PROCESSING_STEP),
        pipeline(broken(PROCESSING_STEP, "Arguments.NetworkConfig.EnableInterContainerTrafficEncryption")),
    ),
    (
        "JobKms",
        pipeline(condition_step(TRAINING_STEP)),
        pipeline(condition_step(broken(TRAINING_STEP, "Arguments.ResourceConfig.VolumeKmsKeyId"))),
    ),
    (
        "JobInVpc",
        pipeline(PROCESSING_STEP),
        pipeline(broken(PROCESSING_STEP, "Arguments.NetworkConfig.VpcConfig")),
    ),
    (
        "PipelineDefinitionReadable",
        pipeline(TRAINING_STEP, as_join=True),
        {
            "Type": "AWS::SageMaker::Pipeline",
            "Properties": {"PipelineDefinition": {"PipelineDefinitionS3Location": {}}},
        },
    ),
    (
        "ModelNetworkIsolation",
        pipeline(MODEL_STEP),
        pipeline(broken(MODEL_STEP, "Arguments.EnableNetworkIsolation")),
    ),
]


def rule_findings(rule_id: str, resource: dict[str, Any]) -> list[str]:
    template = {"Resources": {"Thing": resource}}
    return [f.location for f in check_template(template, (RULES_BY_ID[f"MlPlatform-{rule_id}"],))]


@pytest.mark.parametrize(("rule_id", "compliant", "non_compliant"), CASES)
def test_rule(rule_id: str, compliant: dict[str, Any], non_compliant: dict[str, Any]) -> None:
    assert rule_findings(rule_id, compliant) == []
    assert len(rule_findings(rule_id, non_compliant)) == 1


def test_every_rule_has_a_case() -> None:
    assert {f"MlPlatform-{case[0]}" for case in CASES} == {rule.id for rule in RULES}


def test_compliant_resources_pass_every_rule() -> None:
    template = {
        "Resources": {
            "Model": MODEL,
            "Config": ENDPOINT_CONFIG,
            "Job": MONITORING_JOB,
            "Group": FEATURE_GROUP,
            "Pipeline": pipeline(PROCESSING_STEP, condition_step(TRAINING_STEP), as_join=True),
        }
    }
    assert check_template(template) == []


def test_serverless_variants_need_no_instance_count_or_volume_key() -> None:
    serverless = {
        "Type": "AWS::SageMaker::EndpointConfig",
        "Properties": {
            "ProductionVariants": [{"VariantName": "Main", "ServerlessConfig": {"MemorySizeInMB": 2048}}],
            "DataCaptureConfig": {"EnableCapture": True, "KmsKeyId": KEY},
        },
    }
    assert rule_findings("EndpointMultiInstance", serverless) == []
    assert rule_findings("EndpointConfigKms", serverless) == []


def test_an_unisolated_processing_step_is_a_finding_named_after_its_step() -> None:
    # Feature ingestion needs the network: it is acknowledged on its own pipeline, not exempt by kind.
    open_processing = broken(PROCESSING_STEP, "Arguments.NetworkConfig.EnableNetworkIsolation", False)
    locations = rule_findings("JobNetworkIsolation", pipeline(open_processing))
    assert locations == [f"PipelineDefinition.Steps[{PROCESSING_STEP['Name']}].EnableNetworkIsolation"]


def test_finding_locations_name_the_step() -> None:
    bad = pipeline(condition_step(broken(TRAINING_STEP, "Arguments.VpcConfig")))
    assert rule_findings("JobInVpc", bad) == ["PipelineDefinition.Steps[Train].VpcConfig"]


# --- MlPlatform-EndpointMonitored: a rule over every template of one environment ----------------------

ENDPOINT = {
    "Type": "AWS::SageMaker::Endpoint",
    "Properties": {
        "EndpointName": "churn-prod",
        "EndpointConfigName": {"Fn::GetAtt": ["Config", "EndpointConfigName"]},
    },
}
SERVING_TEMPLATE = {"Resources": {"Config": ENDPOINT_CONFIG, "Endpoint": ENDPOINT}}
MONITORING_SCHEDULE = {
    "Type": "AWS::SageMaker::MonitoringSchedule",
    "Properties": {"MonitoringScheduleName": "churn-prod-data-quality", "EndpointName": "churn-prod"},
}
RESOLVE_STEP = {"Name": "ResolveBaselines", "Type": "Lambda", "Arguments": {"endpoint_name": "churn-prod"}}


def monitoring_pipeline(name: str = "churn-prod-monitoring") -> dict[str, Any]:
    resource = pipeline(condition_step(PROCESSING_STEP), RESOLVE_STEP)
    resource["Properties"]["PipelineName"] = name
    return resource


def schedule_of(pipeline_name: str, state: str = "ENABLED") -> dict[str, Any]:
    arn = {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, f":sagemaker:eu-west-1:444444444444:pipeline/{pipeline_name}"],
        ]
    }
    return {"Type": "AWS::Scheduler::Schedule", "Properties": {"State": state, "Target": {"Arn": arn}}}


def stage_findings(*templates: dict[str, Any]) -> list[tuple[str, str, str]]:
    from policy.ml_platform_rules import check_stage

    by_key = {f"stack{index}": template for index, template in enumerate(templates)}
    return [(key, f.logical_id, f.rule_id) for key, f in check_stage(by_key)]


@pytest.mark.parametrize(
    "monitoring",
    [
        {"Resources": {"DataQuality": MONITORING_SCHEDULE}},
        {"Resources": {"Pipeline": monitoring_pipeline(), "Schedule": schedule_of("churn-prod-monitoring")}},
    ],
    ids=["model-monitor-schedule", "scheduled-platform-pipeline"],
)
def test_an_endpoint_with_capture_is_monitored_by_either_backend(monitoring: dict[str, Any]) -> None:
    assert stage_findings(SERVING_TEMPLATE, monitoring) == []


@pytest.mark.parametrize(
    "monitoring",
    [
        {"Resources": {}},
        {"Resources": {"Pipeline": monitoring_pipeline()}},  # a pipeline nothing starts
        {
            "Resources": {
                "Pipeline": monitoring_pipeline(),
                "Schedule": schedule_of("churn-prod-monitoring", "DISABLED"),
            }
        },
        {"Resources": {"Pipeline": monitoring_pipeline("other"), "Schedule": schedule_of("churn-prod-training")}},
        {"Resources": {"DataQuality": broken(MONITORING_SCHEDULE, "Properties.EndpointName", "churn-dev")}},
    ],
    ids=["nothing", "unscheduled-pipeline", "disabled-schedule", "other-pipeline-scheduled", "other-endpoint"],
)
def test_an_endpoint_with_capture_and_no_monitoring_is_a_finding(monitoring: dict[str, Any]) -> None:
    assert stage_findings(SERVING_TEMPLATE, monitoring) == [("stack0", "Config", "MlPlatform-EndpointMonitored")]


def test_an_endpoint_without_capture_needs_no_monitoring() -> None:
    no_capture = broken(ENDPOINT_CONFIG, "Properties.DataCaptureConfig")
    assert stage_findings({"Resources": {"Config": no_capture, "Endpoint": ENDPOINT}}) == []
    disabled = broken(ENDPOINT_CONFIG, "Properties.DataCaptureConfig.EnableCapture", False)
    assert stage_findings({"Resources": {"Config": disabled, "Endpoint": ENDPOINT}}) == []
