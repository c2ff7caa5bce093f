"""The SageMaker API rule pack: each rule passes a compliant template and flags a non-compliant one,
cites a sentence that is in the API reference botocore ships, and runs as a synth gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack, Stage
from aws_cdk import aws_sagemaker as sagemaker

from app import create_app
from config.sagemaker_api import ENDPOINT_LOCAL_STORAGE_SENTENCE, LOCAL_STORAGE_SENTENCE, documentation
from policy.acknowledge import acknowledge
from policy.sagemaker_api_rules import (
    MAX_WAIT_SENTENCE,
    RULES,
    RULES_BY_ID,
    SERVERLESS_MEMORY_SENTENCE,
    SHADOW_SENTENCE,
    check_template,
)

KEY = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VPC = {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}


def template(**resources: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": resources}


def pipeline(steps: list[dict[str, Any]], parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = {"Version": "2020-12-01", "Parameters": parameters or [], "Steps": steps}
    return {
        "Type": "AWS::SageMaker::Pipeline",
        "Properties": {
            "PipelineName": "churn-test-training",
            "PipelineDefinition": {"PipelineDefinitionBody": json.dumps(body)},
        },
    }


def training(
    instance_type: Any, *, key: str | None = KEY, stopping: dict[str, Any] | None = None, spot: bool = False
) -> dict[str, Any]:
    resources: dict[str, Any] = {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30}
    if key:
        resources["VolumeKmsKeyId"] = key
    return {
        "Name": "Train",
        "Type": "Training",
        "Arguments": {
            "ResourceConfig": resources,
            "StoppingCondition": stopping or {"MaxRuntimeInSeconds": 3600},
            "EnableManagedSpotTraining": spot,
        },
    }


def processing(instance_type: Any, *, key: str | None = KEY) -> dict[str, Any]:
    cluster: dict[str, Any] = {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30}
    if key:
        cluster["VolumeKmsKeyId"] = key
    return {
        "Name": "Preprocess",
        "Type": "Processing",
        "Arguments": {"ProcessingResources": {"ClusterConfig": cluster}},
    }


def transform(instance_type: str, *, key: str | None = KEY) -> dict[str, Any]:
    resources: dict[str, Any] = {"InstanceType": instance_type, "InstanceCount": 1}
    if key:
        resources["VolumeKmsKeyId"] = key
    return {"Name": "Score", "Type": "Transform", "Arguments": {"TransformResources": resources}}


def parameter(name: str, default: Any, enum: list[str] | None = None, kind: str = "String") -> dict[str, Any]:
    value: dict[str, Any] = {"Name": name, "Type": kind, "DefaultValue": default}
    if enum is not None:
        value["EnumValues"] = enum
    return value


def variant(name: str, instance_type: str = "ml.m5.large", **extra: Any) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": "model",
        "InstanceType": instance_type,
        "InitialInstanceCount": 2,
        **extra,
    }


def endpoint_config(
    variants: list[dict[str, Any]], shadows: list[dict[str, Any]] | None = None, **props: Any
) -> dict[str, Any]:
    properties: dict[str, Any] = {"ProductionVariants": variants, **props}
    if shadows:
        properties["ShadowProductionVariants"] = shadows
    return {"Type": "AWS::SageMaker::EndpointConfig", "Properties": properties}


def serverless_variant(memory: int = 2048, concurrency: int = 5, model: Any = None) -> dict[str, Any]:
    return {
        "VariantName": "Champion",
        "ModelName": model or {"Fn::GetAtt": ["Model", "ModelName"]},
        "ServerlessConfig": {"MemorySizeInMB": memory, "MaxConcurrency": concurrency},
    }


def model(**props: Any) -> dict[str, Any]:
    return {"Type": "AWS::SageMaker::Model", "Properties": {"ExecutionRoleArn": "arn:aws:iam::1:role/r", **props}}


def tuning(name: Any) -> dict[str, Any]:
    return {
        "Name": "Tune",
        "Type": "Tuning",
        "Arguments": {
            "HyperParameterTuningJobName": name,
            "TrainingJobDefinition": {"ResourceConfig": {"InstanceType": "ml.m5.xlarge", "VolumeKmsKeyId": KEY}},
        },
    }


# rule -> (compliant templates, [(non-compliant template, location, words of the message)])
CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str, str]]]] = {
    "SageMakerApi-ShadowVariantShape": (
        [
            template(Config=endpoint_config([variant("Champion")], [variant("Shadow")], KmsKeyId=KEY)),
            template(Config=endpoint_config([variant("Champion"), variant("Challenger")], KmsKeyId=KEY)),
        ],
        [
            (
                template(Config=endpoint_config([variant("Champion"), variant("Challenger")], [variant("Shadow")])),
                "Properties.ShadowProductionVariants",
                "exactly one production variant and one shadow",
            )
        ],
    ),
    "SageMakerApi-LocalStorageVolumeKey": (
        [
            template(Pipeline=pipeline([training("ml.g5.2xlarge", key=None), processing("ml.m5.xlarge")])),
            template(
                Config=endpoint_config([variant("Champion", "ml.g5.xlarge")], [variant("Shadow", "ml.g5.xlarge")])
            ),
        ],
        [
            (
                template(Pipeline=pipeline([training("ml.g5.2xlarge")])),
                "PipelineDefinition.Steps[Train].ResourceConfig.VolumeKmsKeyId",
                "ml.g5.2xlarge has local NVMe storage",
            ),
            (
                template(
                    Pipeline=pipeline(
                        [processing({"Get": "Parameters.ProcessingInstanceType"})],
                        [parameter("ProcessingInstanceType", "ml.m5.xlarge", ["ml.m5.xlarge", "ml.g4dn.xlarge"])],
                    )
                ),
                "PipelineDefinition.Steps[Preprocess].ProcessingResources.ClusterConfig.VolumeKmsKeyId",
                "ml.g4dn.xlarge (a value of pipeline parameter ProcessingInstanceType)",
            ),
            (
                template(Pipeline=pipeline([transform("ml.m5d.large")])),
                "PipelineDefinition.Steps[Score].TransformResources.VolumeKmsKeyId",
                "ml.m5d.large has local NVMe storage",
            ),
            (
                template(Config=endpoint_config([variant("Champion", "ml.g5.xlarge")], KmsKeyId=KEY)),
                "Properties.KmsKeyId",
                "the call to CreateEndpointConfig fails",
            ),
        ],
    ),
    "SageMakerApi-InstanceTypeParameter": (
        [
            template(
                Pipeline=pipeline(
                    [training({"Get": "Parameters.TrainingInstanceType"})],
                    [parameter("TrainingInstanceType", "ml.m5.xlarge", ["ml.m5.xlarge", "ml.m5.2xlarge"])],
                )
            )
        ],
        [
            (
                template(
                    Pipeline=pipeline(
                        [training({"Get": "Parameters.TrainingInstanceType"})],
                        [parameter("TrainingInstanceType", "ml.m5.xlarge")],
                    )
                ),
                "PipelineDefinition.Steps[Train].ResourceConfig.InstanceType",
                "accepts any value at run time",
            ),
            (
                template(
                    Pipeline=pipeline(
                        [training({"Get": "Parameters.TrainingInstanceType"}, key=None)],
                        [parameter("TrainingInstanceType", "ml.g5.2xlarge", ["ml.g5.2xlarge", "ml.m5.xlarge"])],
                    )
                ),
                "PipelineDefinition.Steps[Train].ResourceConfig.InstanceType",
                "keep EnumValues to one storage class",
            ),
        ],
    ),
    "SageMakerApi-InstanceTypeForJob": (
        [template(Pipeline=pipeline([processing("ml.m5.xlarge"), training("ml.p4d.24xlarge", key=None)]))],
        [
            (
                template(Pipeline=pipeline([processing("ml.p4d.24xlarge", key=None)])),
                "PipelineDefinition.Steps[Preprocess].ProcessingResources.ClusterConfig.InstanceType",
                "ml.p4d.24xlarge is not in ProcessingInstanceType",
            ),
            (
                template(Config=endpoint_config([variant("Champion", "ml.t3.medium"), variant("B")], KmsKeyId=KEY)),
                "Properties.ProductionVariants[0].InstanceType",
                "ml.t3.medium is not in ProductionVariantInstanceType",
            ),
            (
                template(
                    Pipeline=pipeline(
                        [
                            {
                                "Name": "RegisterModel",
                                "Type": "RegisterModel",
                                "Arguments": {
                                    "InferenceSpecification": {"SupportedTransformInstanceTypes": ["ml.t3.medium"]}
                                },
                            }
                        ]
                    )
                ),
                "PipelineDefinition.Steps[RegisterModel].InferenceSpecification.SupportedTransformInstanceTypes",
                "CreateModelPackage refuses it",
            ),
        ],
    ),
    "SageMakerApi-ServerlessLimits": (
        [template(Model=model(), Config=endpoint_config([serverless_variant()]))],
        [
            (
                template(Model=model(), Config=endpoint_config([serverless_variant(memory=3000)])),
                "Properties.ProductionVariants[0].ServerlessConfig.MemorySizeInMB",
                "1 GB increments",
            ),
            (
                template(Model=model(), Config=endpoint_config([serverless_variant(concurrency=500)])),
                "Properties.ProductionVariants[0].ServerlessConfig.MaxConcurrency",
                "accepts 1 to 200",
            ),
            (
                template(Model=model(), Config=endpoint_config([serverless_variant(), serverless_variant()])),
                "Properties.ProductionVariants",
                "one production variant and no shadow",
            ),
            (
                template(Model=model(VpcConfig=VPC), Config=endpoint_config([serverless_variant()])),
                "Properties.ProductionVariants[0].ModelName",
                "sets VpcConfig or network isolation",
            ),
        ],
    ),
    "SageMakerApi-SpotMaxWait": (
        [
            template(
                Pipeline=pipeline(
                    [
                        training(
                            "ml.m5.xlarge",
                            spot=True,
                            stopping={
                                "MaxRuntimeInSeconds": {"Get": "Parameters.MaxRuntimeSeconds"},
                                "MaxWaitTimeInSeconds": {"Get": "Parameters.MaxWaitSeconds"},
                            },
                        )
                    ],
                    [
                        parameter("MaxRuntimeSeconds", 3600, kind="Integer"),
                        parameter("MaxWaitSeconds", 7200, kind="Integer"),
                    ],
                )
            )
        ],
        [
            (
                template(
                    Pipeline=pipeline(
                        [training("ml.m5.xlarge", stopping={"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200})]
                    )
                ),
                "PipelineDefinition.Steps[Train].StoppingCondition.MaxWaitTimeInSeconds",
                "without EnableManagedSpotTraining",
            ),
            (
                template(
                    Pipeline=pipeline(
                        [
                            training(
                                "ml.m5.xlarge",
                                spot=True,
                                stopping={
                                    "MaxRuntimeInSeconds": 7200,
                                    "MaxWaitTimeInSeconds": {"Get": "Parameters.Wait"},
                                },
                            )
                        ],
                        [parameter("Wait", 3600, kind="Integer")],
                    )
                ),
                "PipelineDefinition.Steps[Train].StoppingCondition.MaxWaitTimeInSeconds",
                "3600 s is below MaxRuntimeInSeconds (7200 s)",
            ),
            (
                template(Pipeline=pipeline([training("ml.m5.xlarge", spot=True)])),
                "PipelineDefinition.Steps[Train].StoppingCondition",
                "managed spot training without MaxWaitTimeInSeconds",
            ),
        ],
    ),
    "SageMakerApi-NameConstraints": (
        [
            template(
                Endpoint={"Type": "AWS::SageMaker::Endpoint", "Properties": {"EndpointName": "churn-prod"}},
                # 18 + 1 + 12 = 31 characters with the execution ID: fits the tuning job name's 32
                Pipeline=pipeline(
                    [
                        tuning(
                            {
                                "Std:Join": {
                                    "On": "-",
                                    "Values": ["churn-staging-tune", {"Get": "Execution.PipelineExecutionId"}],
                                }
                            }
                        )
                    ]
                ),
            )
        ],
        [
            (
                template(Endpoint={"Type": "AWS::SageMaker::Endpoint", "Properties": {"EndpointName": "churn_prod"}}),
                "Properties.EndpointName",
                "does not match EndpointName's pattern",
            ),
            (
                template(
                    Pipeline=pipeline(
                        [
                            tuning(
                                {
                                    "Std:Join": {
                                        "On": "-",
                                        "Values": ["churn-staging-tuning", {"Get": "Execution.PipelineExecutionId"}],
                                    }
                                }
                            )
                        ]
                    )
                ),
                "PipelineDefinition.Steps[Tune].HyperParameterTuningJobName",
                "up to 33 characters; HyperParameterTuningJobName takes at most 32",  # 20 + 1 + 12
            ),
            (
                template(Config=endpoint_config([variant("V" * 64), variant("B")], KmsKeyId=KEY)),
                "Properties.ProductionVariants[0].VariantName",
                "VariantName takes at most 63",
            ),
        ],
    ),
}


def findings_of(rule_id: str, data: dict[str, Any]) -> list[Any]:
    return [f for f in check_template(data) if f.rule_id == rule_id]


def test_every_rule_has_compliant_and_non_compliant_cases() -> None:
    assert set(CASES) == set(RULES_BY_ID)
    for rule_id, (good, bad) in CASES.items():
        assert good, rule_id
        assert bad, rule_id


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_compliant_templates_pass(rule_id: str) -> None:
    for data in CASES[rule_id][0]:
        assert findings_of(rule_id, data) == [], json.dumps(data)[:300]


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_non_compliant_templates_are_flagged_with_what_to_change(rule_id: str) -> None:
    for data, location, words in CASES[rule_id][1]:
        found = findings_of(rule_id, data)
        assert [f.location for f in found] == [location], (rule_id, found)
        assert words in found[0].detail, (words, found[0].detail)


def test_each_rule_cites_the_api_reference() -> None:
    for rule in RULES:
        assert rule.source, rule.id
    # The quoted sentences are in the API reference botocore ships.
    for shape, member, sentence in (
        ("ResourceConfig", "VolumeKmsKeyId", LOCAL_STORAGE_SENTENCE),
        ("ProcessingClusterConfig", "VolumeKmsKeyId", LOCAL_STORAGE_SENTENCE),
        ("TransformResources", "VolumeKmsKeyId", LOCAL_STORAGE_SENTENCE),
        ("CreateEndpointConfigInput", "ShadowProductionVariants", SHADOW_SENTENCE),
        ("ProductionVariantServerlessConfig", "MemorySizeInMB", SERVERLESS_MEMORY_SENTENCE),
        ("StoppingCondition", "MaxWaitTimeInSeconds", MAX_WAIT_SENTENCE),
        (
            "CreateHyperParameterTuningJobRequest",
            "HyperParameterTuningJobName",
            "The name must have 1 to 32 characters.",
        ),
    ):
        assert sentence in documentation(shape, member), (shape, member)
    # CreateEndpointConfig's KmsKeyId: the sentence the rule quotes is the API and CloudFormation reference's
    # ("the call to CreateEndpointConfig fails"); botocore 1.44 now says the key "does not encrypt instance
    # local storage". Either way a key on local storage encrypts nothing; the rule keeps it out.
    endpoint_key = documentation("CreateEndpointConfigInput", "KmsKeyId")
    assert "Local storage volumes are encrypted using a hardware module on the instance." in endpoint_key
    assert "CreateEndpointConfig fails" in ENDPOINT_LOCAL_STORAGE_SENTENCE


def _bad_endpoint_app(tmp_path: Path, *, acknowledged: bool) -> Any:
    app = create_app(outdir=str(tmp_path))
    stack = Stack(Stage(app, "Canary"), "Shape")
    config = sagemaker.CfnEndpointConfig(
        stack,
        "Config",
        kms_key_id=KEY,
        production_variants=[
            sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=name, model_name="m", instance_type="ml.m5.large", initial_instance_count=2
            )
            for name in ("Champion", "Challenger")
        ],
        shadow_production_variants=[
            sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name="Shadow", model_name="m", instance_type="ml.m5.large", initial_instance_count=2
            )
        ],
    )
    if acknowledged:
        acknowledge(config, "SageMakerApi-ShadowVariantShape", "canary: the shape is deliberately wrong here")
    return app


def test_the_pack_is_a_synth_gate_and_acknowledgments_reach_it(tmp_path: Path) -> None:
    with pytest.raises(Exception) as caught:  # noqa: PT011  (jsii raises a plain Exception)
        _bad_endpoint_app(tmp_path / "bad", acknowledged=False).synth()
    message = str(caught.value)
    assert "SageMakerApi-ShadowVariantShape" in message
    assert "you can only specify one variant for ProductionVariants" in message  # the cited sentence
    with pytest.raises(Exception) as again:  # noqa: PT011  (other packs still fail the canary)
        _bad_endpoint_app(tmp_path / "acked", acknowledged=True).synth()
    assert "SageMakerApi-ShadowVariantShape" not in str(again.value)
