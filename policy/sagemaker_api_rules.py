"""What CloudFormation accepts and the SageMaker API refuses, checked on the synthesized templates.

CloudFormation validates a SageMaker resource against its own schema, and a pipeline definition is
only a JSON string to it: a request SageMaker refuses still synthesizes and deploys, and fails when the
endpoint is created or when a pipeline execution reaches the step. Each rule below enforces one
sentence of the SageMaker API reference (quoted in ``Rule.source``), reads its data (instance types per
request kind, name lengths and patterns) from botocore's SageMaker service model
(:mod:`config.sagemaker_api`), and says in its message what to change. Pipeline parameters that feed a
checked field are resolved to every value they admit (default and ``EnumValues``).

The rules run as a CDK policy-validation plugin (:class:`SageMakerApiChecks`, registered in
``policy/packs.py``) next to cdk-nag and the MlPlatform rules. ``config/settings.py`` refuses the same
mistakes earlier where config can express them, with the same message style.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from config.sagemaker_api import (
    ENDPOINT_LOCAL_STORAGE_SENTENCE,
    INSTANCE_TYPE_SHAPES,
    LOCAL_STORAGE_SENTENCE,
    JobKind,
    UnknownInstanceStorageError,
    has_local_storage,
    instance_types,
    name_constraint,
    service_model,
)
from policy.ml_platform_rules import Finding, Rule, TemplateRuleChecks, parse_pipeline_definition, value_at
from policy.ml_platform_rules import check_template as check_rules

PACK_NAME = "SageMakerApi"
Resource = Mapping[str, Any]
# Pipeline execution IDs are 12 characters (…/execution/<id> in PipelineExecutionArn).
EXECUTION_ID_LENGTH = 12

SHADOW_SENTENCE = (
    "If you use this field, you can only specify one variant for ProductionVariants and one variant for "
    "ShadowProductionVariants."
)
SERVERLESS_MEMORY_SENTENCE = (
    "Valid values are in 1 GB increments: 1024 MB, 2048 MB, 3072 MB, 4096 MB, 5120 MB, or 6144 MB."
)
MAX_WAIT_SENTENCE = "It must be equal to or greater than MaxRuntimeInSeconds."


# --- requests in a template -----------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceRequest:
    """A request that launches instances: where its instance type and volume key are, and what the type
    can be (a literal, or every value a pipeline parameter admits)."""

    where: str
    kind: JobKind
    instance_types: tuple[str, ...]  # literal values it can take; empty when unknowable
    parameter: str | None  # the pipeline parameter that sets it, if any
    bounded: bool  # False for a parameter without EnumValues (any value at run time)
    volume_key_field: str | None  # location of the request's volume key field, None where it has none
    volume_key: Any


def _props(resource: Resource) -> Mapping[str, Any]:
    return resource.get("Properties") or {}


def _steps(definition: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    pending = list(definition.get("Steps") or [])
    while pending:
        step = pending.pop(0)
        yield step
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments") or {}
            pending += list(arguments.get("IfSteps") or []) + list(arguments.get("ElseSteps") or [])


def _parameters(definition: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(p.get("Name")): p for p in definition.get("Parameters") or []}


def _values(value: Any, parameters: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[str, ...], str | None, bool]:
    """(possible literal values, parameter name, bounded) of a field's value in a pipeline definition."""
    if isinstance(value, str):
        return (value,), None, True
    path = value.get("Get") if isinstance(value, Mapping) else None
    if isinstance(path, str) and path.startswith("Parameters."):
        name = path.removeprefix("Parameters.")
        parameter = parameters.get(name) or {}
        enum = [str(v) for v in parameter.get("EnumValues") or []]
        default = parameter.get("DefaultValue")
        values = tuple(dict.fromkeys([*([str(default)] if default is not None else []), *enum]))
        return values, name, bool(enum)
    return (), None, False


def _resolve_number(value: Any, parameters: Mapping[str, Mapping[str, Any]]) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    path = value.get("Get") if isinstance(value, Mapping) else None
    if isinstance(path, str) and path.startswith("Parameters."):
        default = (parameters.get(path.removeprefix("Parameters.")) or {}).get("DefaultValue")
        return default if isinstance(default, int) and not isinstance(default, bool) else None
    return None


# Step type -> (request kind, where its instance type and volume key are).
STEP_RESOURCES: dict[str, tuple[JobKind, str]] = {
    "Training": ("training", "ResourceConfig"),
    "Tuning": ("training", "ResourceConfig"),
    "Processing": ("processing", "ProcessingResources.ClusterConfig"),
    "Transform": ("transform", "TransformResources"),
}


def _pipeline_requests(resource: Resource) -> Iterator[InstanceRequest]:
    definition = parse_pipeline_definition(resource)
    if definition is None:
        return
    parameters = _parameters(definition)
    for step in _steps(definition):
        arguments = step.get("Arguments") or {}
        where = f"PipelineDefinition.Steps[{step.get('Name')}]"
        kind = step.get("Type")
        if kind == "Tuning":
            arguments = arguments.get("TrainingJobDefinition") or {}
            where += ".TrainingJobDefinition"
        located = STEP_RESOURCES.get(str(kind))
        if located is None:
            continue
        job_kind, resources = located
        values, parameter, bounded = _values(value_at(arguments, f"{resources}.InstanceType"), parameters)
        yield InstanceRequest(
            where=f"{where}.{resources}.InstanceType",
            kind=job_kind,
            instance_types=values,
            parameter=parameter,
            bounded=bounded,
            volume_key_field=f"{where}.{resources}.VolumeKmsKeyId",
            volume_key=value_at(arguments, f"{resources}.VolumeKmsKeyId"),
        )


MONITORING_RESOURCES = {
    "AWS::SageMaker::DataQualityJobDefinition": "JobResources.ClusterConfig",
    "AWS::SageMaker::ModelQualityJobDefinition": "JobResources.ClusterConfig",
    "AWS::SageMaker::ModelBiasJobDefinition": "JobResources.ClusterConfig",
    "AWS::SageMaker::ModelExplainabilityJobDefinition": "JobResources.ClusterConfig",
    "AWS::SageMaker::MonitoringSchedule": "MonitoringScheduleConfig.MonitoringJobDefinition.MonitoringResources."
    "ClusterConfig",
}


def instance_requests(resource: Resource) -> Iterator[InstanceRequest]:
    """Every instance request of a resource: pipeline jobs, endpoint variants, monitoring jobs."""
    kind = resource.get("Type")
    props = _props(resource)
    if kind == "AWS::SageMaker::Pipeline":
        yield from _pipeline_requests(resource)
    elif kind == "AWS::SageMaker::EndpointConfig":
        for field in ("ProductionVariants", "ShadowProductionVariants"):
            for index, variant in enumerate(props.get(field) or []):
                instance_type = variant.get("InstanceType") if isinstance(variant, Mapping) else None
                if isinstance(instance_type, str):
                    yield InstanceRequest(
                        where=f"Properties.{field}[{index}].InstanceType",
                        kind="hosting",
                        instance_types=(instance_type,),
                        parameter=None,
                        bounded=True,
                        volume_key_field="Properties.KmsKeyId",
                        volume_key=props.get("KmsKeyId"),
                    )
    elif kind in MONITORING_RESOURCES:
        cluster = MONITORING_RESOURCES[str(kind)]
        instance_type = value_at(props, f"{cluster}.InstanceType")
        if isinstance(instance_type, str):
            yield InstanceRequest(
                where=f"Properties.{cluster}.InstanceType",
                kind="processing",
                instance_types=(instance_type,),
                parameter=None,
                bounded=True,
                volume_key_field=f"Properties.{cluster}.VolumeKmsKeyId",
                volume_key=value_at(props, f"{cluster}.VolumeKmsKeyId"),
            )


def _set(value: Any) -> bool:
    return value not in (None, "", [], {})


def _local(instance_type: str) -> bool | None:
    try:
        return has_local_storage(instance_type)
    except (UnknownInstanceStorageError, ValueError):
        return None


# --- rules ------------------------------------------------------------------------------------------


def _shadow_variant_shape(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    if resource.get("Type") != "AWS::SageMaker::EndpointConfig":
        return
    props = _props(resource)
    shadows = props.get("ShadowProductionVariants") or []
    variants = props.get("ProductionVariants") or []
    if shadows and (len(variants) != 1 or len(shadows) != 1):
        yield (
            "Properties.ShadowProductionVariants",
            (
                f"{len(variants)} production variant(s) with {len(shadows)} shadow variant(s): with a shadow variant "
                "SageMaker takes exactly one production variant and one shadow; keep one production variant (config: "
                "serving.variants) or drop the shadow (serving.shadow_variant = false) for a weighted A/B test"
            ),
        )


def _local_storage_volume_key(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    reported: set[str] = set()
    for request in instance_requests(resource):
        if not _set(request.volume_key) or request.volume_key_field is None:
            continue
        local = [t for t in request.instance_types if _local(t)]
        if not local or request.volume_key_field in reported:
            continue
        reported.add(request.volume_key_field)
        origin = f" (a value of pipeline parameter {request.parameter})" if request.parameter else ""
        sentence = (
            ENDPOINT_LOCAL_STORAGE_SENTENCE
            if resource.get("Type") == "AWS::SageMaker::EndpointConfig"
            else LOCAL_STORAGE_SENTENCE
        )
        yield (
            request.volume_key_field,
            (
                f"{', '.join(local)}{origin} has local NVMe storage and the request sets a volume KMS key, which "
                f'SageMaker refuses ("{sentence}"); leave the field out for local-storage instance types '
                "(platform_constructs.pipeline_definition.volume_key_field / config.sagemaker_api.volume_kms_key_for): "
                "the instance's hardware encrypts those volumes"
            ),
        )


def _instance_type_parameter(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    for request in instance_requests(resource):
        if request.parameter is None:
            continue
        if not request.bounded:
            yield (
                request.where,
                (
                    f"pipeline parameter {request.parameter} sets the instance type and accepts any value at run time, "
                    "so an execution can request a type the job kind does not take or one whose storage contradicts the "
                    "request's volume key; give it EnumValues "
                    "(platform_constructs.pipeline_definition.instance_type_parameter)"
                ),
            )
            continue
        classes = {_local(t) for t in request.instance_types} - {None}
        if len(classes) > 1:
            yield (
                request.where,
                (
                    f"pipeline parameter {request.parameter} admits instance types with local NVMe storage and types "
                    f"with EBS volumes ({', '.join(request.instance_types)}): one of the two refuses or lacks the volume "
                    "key the request carries; keep EnumValues to one storage class"
                ),
            )


def _instance_type_for_job(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    for request in instance_requests(resource):
        accepted = instance_types(request.kind)
        refused = [t for t in request.instance_types if t not in accepted]
        if refused:
            origin = f" (pipeline parameter {request.parameter})" if request.parameter else ""
            yield (
                request.where,
                (
                    f"{', '.join(refused)}{origin} is not in {INSTANCE_TYPE_SHAPES[request.kind]}, the instance types "
                    f"SageMaker accepts for this {request.kind} request; choose one of them (config: "
                    "training.instance_type, training.processing_instance_type, serving.instance_type, "
                    "serving.batch_instance_type)"
                ),
            )
        unknown = [t for t in request.instance_types if t in accepted and _local(t) is None]
        if unknown:
            yield (
                request.where,
                (
                    f"{', '.join(unknown)}: storage (EBS or local NVMe) not classified, so whether SageMaker takes a volume "
                    "key for it is unknown; classify the family in config/sagemaker_api.py"
                ),
            )
    definition = parse_pipeline_definition(resource) if resource.get("Type") == "AWS::SageMaker::Pipeline" else None
    for step in _steps(definition or {}):
        if step.get("Type") != "RegisterModel":
            continue
        specification = (step.get("Arguments") or {}).get("InferenceSpecification") or {}
        package_fields: tuple[tuple[str, JobKind], ...] = (
            ("SupportedRealtimeInferenceInstanceTypes", "hosting"),
            ("SupportedTransformInstanceTypes", "transform"),
        )
        for field, kind in package_fields:
            refused = [
                t for t in specification.get(field) or [] if isinstance(t, str) and t not in instance_types(kind)
            ]
            if refused:
                yield (
                    f"PipelineDefinition.Steps[{step.get('Name')}].InferenceSpecification.{field}",
                    f"{', '.join(refused)} is not in {INSTANCE_TYPE_SHAPES[kind]}; CreateModelPackage refuses it",
                )


def _serverless_limits(logical_id: str, resource: Resource, template: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if resource.get("Type") != "AWS::SageMaker::EndpointConfig":
        return
    props = _props(resource)
    resources = template.get("Resources") or {}
    for index, model_id in _models_of_serverless_variants(resource):
        model = _props(resources.get(model_id) or {})
        if _set(model.get("VpcConfig")) or model.get("EnableNetworkIsolation") in (True, "true"):
            yield (
                f"Properties.ProductionVariants[{index}].ModelName",
                (
                    f"the serverless variant's model {model_id} sets VpcConfig or network isolation, which Serverless "
                    "Inference does not support (feature exclusions); leave both out for serverless"
                ),
            )
    variants = list(props.get("ProductionVariants") or [])
    for index, variant in enumerate(variants):
        serverless = variant.get("ServerlessConfig") if isinstance(variant, Mapping) else None
        if not serverless:
            continue
        where = f"Properties.ProductionVariants[{index}]"
        memory = serverless.get("MemorySizeInMB")
        if isinstance(memory, int) and (memory % 1024 or not 1024 <= memory <= 6144):
            yield (
                f"{where}.ServerlessConfig.MemorySizeInMB",
                f'{memory} MB; SageMaker: "{SERVERLESS_MEMORY_SENTENCE}" (config: serving.serverless_memory_mb)',
            )
        concurrency = serverless.get("MaxConcurrency")
        bounds = service_model()["shapes"]["ServerlessMaxConcurrency"]
        if isinstance(concurrency, int) and not bounds["min"] <= concurrency <= bounds["max"]:
            yield (
                f"{where}.ServerlessConfig.MaxConcurrency",
                (
                    f"{concurrency}; SageMaker accepts {bounds['min']} to {bounds['max']} (config: "
                    "serving.serverless_max_concurrency)"
                ),
            )
        for field in ("InstanceType", "InitialInstanceCount"):
            if _set(variant.get(field)):
                yield (
                    f"{where}.{field}",
                    "a serverless variant takes no instance settings; remove them or drop ServerlessConfig",
                )
    if any(isinstance(v, Mapping) and v.get("ServerlessConfig") for v in variants):
        if len(variants) > 1 or props.get("ShadowProductionVariants"):
            yield (
                "Properties.ProductionVariants",
                (
                    "serverless inference serves one production variant and no shadow (SageMaker Serverless Inference "
                    "feature exclusions: multiple production variants); use a real-time endpoint for A/B or shadow tests"
                ),
            )
        if _set(props.get("DataCaptureConfig")) or _set(props.get("AsyncInferenceConfig")):
            yield (
                "Properties.DataCaptureConfig",
                (
                    "serverless endpoints take neither data capture nor asynchronous inference (Serverless Inference "
                    "feature exclusions); use inference_type 'realtime' or 'async' where capture is needed"
                ),
            )


def _models_of_serverless_variants(resource: Resource) -> Iterator[tuple[int, str]]:
    for index, variant in enumerate(_props(resource).get("ProductionVariants") or []):
        if not (isinstance(variant, Mapping) and variant.get("ServerlessConfig")):
            continue
        model = variant.get("ModelName")
        target = value_at(model, "Fn::GetAtt") if isinstance(model, Mapping) else None
        if isinstance(target, list) and target:
            yield index, str(target[0])
        elif isinstance(model, Mapping) and "Ref" in model:
            yield index, str(model["Ref"])


def _spot_max_wait(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    definition = parse_pipeline_definition(resource) if resource.get("Type") == "AWS::SageMaker::Pipeline" else None
    if definition is None:
        return
    parameters = _parameters(definition)
    for step in _steps(definition):
        if step.get("Type") not in ("Training", "Tuning"):
            continue
        arguments = step.get("Arguments") or {}
        where = f"PipelineDefinition.Steps[{step.get('Name')}]"
        if step.get("Type") == "Tuning":
            arguments, where = arguments.get("TrainingJobDefinition") or {}, where + ".TrainingJobDefinition"
        stopping = arguments.get("StoppingCondition") or {}
        spot = arguments.get("EnableManagedSpotTraining") in (True, "true")
        if "MaxWaitTimeInSeconds" in stopping and not spot:
            yield (
                f"{where}.StoppingCondition.MaxWaitTimeInSeconds",
                (
                    "set without EnableManagedSpotTraining; SageMaker takes a maximum wait for managed spot training only "
                    '("The maximum length of time, in seconds, that a managed Spot training job has to complete."): '
                    "remove it or turn spot on (config: training.use_spot)"
                ),
            )
        if spot and "MaxWaitTimeInSeconds" not in stopping:
            yield (
                f"{where}.StoppingCondition",
                "managed spot training without MaxWaitTimeInSeconds; set it (config: training.max_wait_seconds)",
            )
        wait = _resolve_number(stopping.get("MaxWaitTimeInSeconds"), parameters)
        runtime = _resolve_number(stopping.get("MaxRuntimeInSeconds"), parameters)
        if wait is not None and runtime is not None and wait < runtime:
            yield (
                f"{where}.StoppingCondition.MaxWaitTimeInSeconds",
                (
                    f'{wait} s is below MaxRuntimeInSeconds ({runtime} s); SageMaker: "{MAX_WAIT_SENTENCE}" '
                    "(config: training.max_wait_seconds >= training.max_runtime_seconds)"
                ),
            )


# Literal names on resources: CloudFormation property -> (Create operation, request member).
NAME_FIELDS: dict[str, tuple[str, dict[str, str]]] = {
    "AWS::SageMaker::Endpoint": ("CreateEndpoint", {"EndpointName": "EndpointName"}),
    "AWS::SageMaker::EndpointConfig": ("CreateEndpointConfig", {"EndpointConfigName": "EndpointConfigName"}),
    "AWS::SageMaker::Model": ("CreateModel", {"ModelName": "ModelName"}),
    "AWS::SageMaker::Pipeline": ("CreatePipeline", {"PipelineName": "PipelineName"}),
    "AWS::SageMaker::FeatureGroup": ("CreateFeatureGroup", {"FeatureGroupName": "FeatureGroupName"}),
    "AWS::SageMaker::ModelPackageGroup": (
        "CreateModelPackageGroup",
        {"ModelPackageGroupName": "ModelPackageGroupName"},
    ),
    "AWS::SageMaker::MonitoringSchedule": (
        "CreateMonitoringSchedule",
        {"MonitoringScheduleName": "MonitoringScheduleName"},
    ),
    "AWS::SageMaker::DataQualityJobDefinition": (
        "CreateDataQualityJobDefinition",
        {"JobDefinitionName": "JobDefinitionName"},
    ),
    "AWS::SageMaker::ModelQualityJobDefinition": (
        "CreateModelQualityJobDefinition",
        {"JobDefinitionName": "JobDefinitionName"},
    ),
    "AWS::SageMaker::ModelBiasJobDefinition": (
        "CreateModelBiasJobDefinition",
        {"JobDefinitionName": "JobDefinitionName"},
    ),
    "AWS::SageMaker::ModelExplainabilityJobDefinition": (
        "CreateModelExplainabilityJobDefinition",
        {"JobDefinitionName": "JobDefinitionName"},
    ),
}
# Names in pipeline step requests: step type -> (Create operation, request member).
STEP_NAME_FIELDS = {
    "Training": ("CreateTrainingJob", "TrainingJobName"),
    "Processing": ("CreateProcessingJob", "ProcessingJobName"),
    "Tuning": ("CreateHyperParameterTuningJob", "HyperParameterTuningJobName"),
    "Transform": ("CreateTransformJob", "TransformJobName"),
    "Model": ("CreateModel", "ModelName"),
}


def _member_shape(operation: str, member: str) -> str:
    model = service_model()
    input_shape = model["operations"][operation]["input"]["shape"]
    return str(model["shapes"][input_shape]["members"][member]["shape"])


def _rendered_name(value: Any, parameters: Mapping[str, Mapping[str, Any]]) -> tuple[str, int] | None:
    """A name as SageMaker will see it: (text with placeholders, its longest length), or None when a part
    is unknowable. A pipeline execution ID counts 12 characters; a parameter its default."""
    if isinstance(value, str):
        return value, len(value)
    join = value.get("Std:Join") if isinstance(value, Mapping) else None
    if isinstance(join, Mapping):
        parts = []
        for part in join.get("Values") or []:
            rendered = _rendered_name(part, parameters)
            if rendered is None:
                return None
            parts.append(rendered)
        separator = str(join.get("On", ""))
        text = separator.join(p[0] for p in parts)
        return text, sum(p[1] for p in parts) + len(separator) * max(len(parts) - 1, 0)
    path = value.get("Get") if isinstance(value, Mapping) else None
    if path == "Execution.PipelineExecutionId":
        return "x" * EXECUTION_ID_LENGTH, EXECUTION_ID_LENGTH
    if isinstance(path, str) and path.startswith("Parameters."):
        default = (parameters.get(path.removeprefix("Parameters.")) or {}).get("DefaultValue")
        return (str(default), len(str(default))) if default is not None else None
    return None


def _name_problem(shape_name: str, text: str, length: int) -> str | None:
    constraint = name_constraint(shape_name)
    if length > constraint.max_length:
        return f"up to {length} characters; {shape_name} takes at most {constraint.max_length}"
    if constraint.pattern and not re.fullmatch(constraint.pattern, text):
        return f"{text!r} does not match {shape_name}'s pattern {constraint.pattern}"
    return None


def _name_constraints(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    kind = str(resource.get("Type"))
    props = _props(resource)
    if kind in NAME_FIELDS:
        operation, fields = NAME_FIELDS[kind]
        for prop, member in fields.items():
            value = props.get(prop)
            if isinstance(value, str):
                problem = _name_problem(_member_shape(operation, member), value, len(value))
                if problem:
                    yield f"Properties.{prop}", f"{value}: {problem}"
    if kind == "AWS::SageMaker::EndpointConfig":
        for field in ("ProductionVariants", "ShadowProductionVariants"):
            for index, variant in enumerate(props.get(field) or []):
                name = variant.get("VariantName") if isinstance(variant, Mapping) else None
                if isinstance(name, str):
                    problem = _name_problem("VariantName", name, len(name))
                    if problem:
                        yield f"Properties.{field}[{index}].VariantName", f"{name}: {problem}"
    definition = parse_pipeline_definition(resource) if kind == "AWS::SageMaker::Pipeline" else None
    if definition is None:
        return
    parameters = _parameters(definition)
    for step in _steps(definition):
        if step.get("Type") not in STEP_NAME_FIELDS:
            continue
        operation, member = STEP_NAME_FIELDS[str(step.get("Type"))]
        value = (step.get("Arguments") or {}).get(member)
        if value is None:
            continue  # SageMaker Pipelines names the job itself
        rendered = _rendered_name(value, parameters)
        if rendered is None:
            continue
        problem = _name_problem(_member_shape(operation, member), *rendered)
        if problem:
            yield f"PipelineDefinition.Steps[{step.get('Name')}].{member}", problem


def _rule(name: str, description: str, fix: str, source: str, check: Any, whole_template: bool = False) -> Rule:
    return Rule(f"{PACK_NAME}-{name}", description, fix, check, source, whole_template)


RULES: tuple[Rule, ...] = (
    _rule(
        "ShadowVariantShape",
        "An endpoint config with a shadow variant has exactly one production variant and one shadow variant.",
        "Keep one production variant next to the shadow, or drop the shadow for a weighted A/B test.",
        f'CreateEndpointConfig, ShadowProductionVariants: "{SHADOW_SENTENCE}"',
        _shadow_variant_shape,
    ),
    _rule(
        "LocalStorageVolumeKey",
        "No volume KMS key on instance types with local NVMe storage (training, tuning, processing and transform "
        "jobs, monitoring jobs, endpoint configs).",
        "Leave VolumeKmsKeyId / KmsKeyId out for those instance types; their storage is hardware-encrypted.",
        f'ResourceConfig, ProcessingClusterConfig, TransformResources, VolumeKmsKeyId: "{LOCAL_STORAGE_SENTENCE}"; '
        f'CreateEndpointConfig, KmsKeyId: "{ENDPOINT_LOCAL_STORAGE_SENTENCE}"',
        _local_storage_volume_key,
    ),
    _rule(
        "InstanceTypeParameter",
        "A pipeline parameter that sets an instance type admits a bounded list (EnumValues) of one storage class.",
        "Build the parameter with platform_constructs.pipeline_definition.instance_type_parameter.",
        f'ResourceConfig, VolumeKmsKeyId: "{LOCAL_STORAGE_SENTENCE}" (the volume-key field is decided at synth, '
        "the instance type at run time)",
        _instance_type_parameter,
    ),
    _rule(
        "InstanceTypeForJob",
        "Every instance type is one SageMaker accepts for that kind of request (botocore's TrainingInstanceType, "
        "ProcessingInstanceType, ProductionVariantInstanceType, TransformInstanceType enums).",
        "Choose an instance type of the request kind's list.",
        "CreateTrainingJob ResourceConfig.InstanceType, CreateProcessingJob ClusterConfig.InstanceType, "
        "CreateEndpointConfig ProductionVariant.InstanceType, CreateTransformJob TransformResources.InstanceType: "
        '"Valid Values: ..." (the enum of each)',
        _instance_type_for_job,
    ),
    _rule(
        "ServerlessLimits",
        "Serverless variants use the memory sizes and concurrency SageMaker offers, alone on their endpoint, "
        "without instance settings, data capture or async inference.",
        "Fix the serverless settings, or use a real-time endpoint.",
        f'ProductionVariantServerlessConfig, MemorySizeInMB: "{SERVERLESS_MEMORY_SENTENCE}"; MaxConcurrency: '
        "1 to 200 (ServerlessMaxConcurrency)",
        _serverless_limits,
        whole_template=True,
    ),
    _rule(
        "SpotMaxWait",
        "MaxWaitTimeInSeconds is set exactly when managed spot training is on, and is not below the maximum runtime.",
        "Set training.use_spot and training.max_wait_seconds >= training.max_runtime_seconds.",
        f'StoppingCondition, MaxWaitTimeInSeconds: "The maximum length of time, in seconds, that a managed Spot '
        f'training job has to complete. ... {MAX_WAIT_SENTENCE}"',
        _spot_max_wait,
    ),
    _rule(
        "NameConstraints",
        "SageMaker names fit the length and pattern of their API shape (names built from a pipeline execution ID "
        "count its 12 characters).",
        "Shorten the name (project and environment names are part of most of them).",
        'e.g. CreateHyperParameterTuningJob, HyperParameterTuningJobName: "The name must have 1 to 32 characters."; '
        "botocore's min, max and pattern of each name shape",
        _name_constraints,
    ),
)
RULES_BY_ID = {rule.id: rule for rule in RULES}


class SageMakerApiChecks(TemplateRuleChecks):
    """Runs :data:`RULES` on every synthesized template as a CDK policy-validation plugin."""

    def __init__(self) -> None:
        super().__init__(PACK_NAME, RULES)


def check_template(template: Mapping[str, Any]) -> list[Finding]:
    """Every finding of this pack in one CloudFormation template."""
    return check_rules(template, RULES)
