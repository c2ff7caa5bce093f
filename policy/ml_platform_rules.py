"""The project's own policy rules for SageMaker settings that cdk-nag does not check.

cdk-nag's SageMaker rules cover notebook instances and the endpoint-config KMS key only. These rules
cover the rest of Security Hub's SageMaker controls that a template can prove: model network
isolation (SageMaker.5), two instances per real-time variant (SageMaker.4), KMS on endpoint configs
and data capture, network isolation, inter-container encryption, VPC and KMS on monitoring jobs
(SageMaker.9-15, .20, .22, .25) and on the jobs of SageMaker Pipelines, and KMS on both Feature
Store stores (SageMaker.17, .18).

The rules read the synthesized CloudFormation template, so they see exactly what will be deployed,
property overrides and pipeline definitions included. :class:`MlPlatformChecks` runs them as a CDK
policy-validation plugin, next to the cdk-nag packs: an unacknowledged finding fails synth, and
``policy.acknowledge.acknowledge(construct, "MlPlatform-<Rule>", reason)`` accepts one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    IPolicyValidationContext,
    IPolicyValidationPlugin,
    PolicyValidationPluginReport,
    PolicyViolatingResource,
    PolicyViolation,
)

PACK_NAME = "MlPlatform"
Resource = Mapping[str, Any]


@dataclass(frozen=True)
class Finding:
    """One resource breaking one rule, at ``location`` inside the resource."""

    rule_id: str
    logical_id: str
    location: str
    detail: str


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    fix: str
    # check(logical_id, resource), or check(logical_id, resource, template) with whole_template
    check: Callable[..., Iterator[tuple[str, str]]]
    source: str = ""  # the API reference sentence the rule enforces, where it enforces one
    whole_template: bool = False


MONITORING_JOB_TYPES = {
    "AWS::SageMaker::DataQualityJobDefinition": ("DataQualityJobOutputConfig", "DataQualityAppSpecification"),
    "AWS::SageMaker::ModelQualityJobDefinition": ("ModelQualityJobOutputConfig", "ModelQualityAppSpecification"),
    "AWS::SageMaker::ModelBiasJobDefinition": ("ModelBiasJobOutputConfig", "ModelBiasAppSpecification"),
    "AWS::SageMaker::ModelExplainabilityJobDefinition": (
        "ModelExplainabilityJobOutputConfig",
        "ModelExplainabilityAppSpecification",
    ),
}


# --- helpers ---------------------------------------------------------------------------------------


def _props(resource: Resource) -> Mapping[str, Any]:
    return resource.get("Properties") or {}


def value_at(data: Any, path: str) -> Any:
    """The value at the dotted ``path`` inside nested mappings, or None where a part is missing."""
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def _is_true(value: Any) -> bool:
    return value is True or value == "true"


def _set(value: Any) -> bool:
    return value not in (None, "", [], {})


@dataclass(frozen=True)
class _Job:
    """The security-relevant settings of one job, wherever it is defined."""

    where: str  # location inside the resource, e.g. "MonitoringScheduleConfig" or "Steps[Train]"
    kind: str  # "training", "processing", "transform" or "monitoring"
    network: Mapping[str, Any] | None  # NetworkConfig-shaped: EnableNetworkIsolation, ...
    volume_key: Any
    output_key: Any
    vpc: Any


def _monitoring_job(where: str, definition: Mapping[str, Any], output_field: str, resources_field: str) -> _Job:
    return _Job(
        where=where,
        kind="monitoring",
        network=definition.get("NetworkConfig"),
        volume_key=value_at(definition, f"{resources_field}.ClusterConfig.VolumeKmsKeyId"),
        output_key=value_at(definition, f"{output_field}.KmsKeyId"),
        vpc=value_at(definition, "NetworkConfig.VpcConfig"),
    )


def parse_pipeline_definition(resource: Resource) -> Mapping[str, Any] | None:
    """The pipeline definition of an ``AWS::SageMaker::Pipeline`` resource as data.

    CloudFormation intrinsics inside the body become readable placeholders (``${Role.Arn}``,
    ``${churn-dev-data:DataKeyArn}``), so the result is plain JSON whatever CDK tokens it held.
    """
    body = value_at(_props(resource), "PipelineDefinition.PipelineDefinitionBody")
    text = _render(body)
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, Mapping) else None


def _render(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(part if isinstance(part, str) else _placeholder(part) for part in parts)
    if isinstance(value, Mapping) and "Fn::Sub" in value:
        template = value["Fn::Sub"]
        return template if isinstance(template, str) else _render(template[0])
    return None


def _placeholder(value: Any) -> str:
    """A CloudFormation intrinsic inside a JSON string, shown as ``${...}``."""
    if isinstance(value, Mapping) and "Ref" in value:
        return "${" + str(value["Ref"]) + "}"
    if isinstance(value, Mapping) and "Fn::GetAtt" in value:
        return "${" + ".".join(map(str, value["Fn::GetAtt"])) + "}"
    if isinstance(value, Mapping) and "Fn::GetStackOutput" in value:
        output = value["Fn::GetStackOutput"]
        return "${" + f"{output.get('StackName')}:{output.get('OutputName')}" + "}"
    if isinstance(value, Mapping) and "Fn::ImportValue" in value:
        return "${" + str(value["Fn::ImportValue"]) + "}"
    if isinstance(value, Mapping) and "Fn::Sub" in value:
        template = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        return str(template).replace('"', "'")  # its own ${...} references stay readable
    if isinstance(value, Mapping):  # any other intrinsic: its name, never JSON (it sits inside a string)
        return "${" + ",".join(sorted(value)) + "}"
    return "${" + str(value).replace('"', "'") + "}"


def _pipeline_jobs(resource: Resource) -> Iterator[_Job]:
    definition = parse_pipeline_definition(resource)
    if definition is None:
        return
    steps = list(definition.get("Steps") or [])
    while steps:
        step = steps.pop()
        arguments = step.get("Arguments") or {}
        where = f"PipelineDefinition.Steps[{step.get('Name')}]"
        kind = step.get("Type")
        if kind == "Condition":
            steps += list(arguments.get("IfSteps") or []) + list(arguments.get("ElseSteps") or [])
            steps += list(step.get("IfSteps") or []) + list(step.get("ElseSteps") or [])
        elif kind == "Training":
            yield _training_job(where, arguments)
        elif kind == "Tuning":
            yield _training_job(where, arguments.get("TrainingJobDefinition") or {})
        elif kind in ("Processing", "QualityCheck", "ClarifyCheck"):
            yield _Job(
                where=where,
                kind="processing",
                network=arguments.get("NetworkConfig"),
                volume_key=value_at(arguments, "ProcessingResources.ClusterConfig.VolumeKmsKeyId"),
                output_key=value_at(arguments, "ProcessingOutputConfig.KmsKeyId"),
                vpc=value_at(arguments, "NetworkConfig.VpcConfig"),
            )
        elif kind == "Transform":
            yield _Job(
                where=where,
                kind="transform",
                network=None,
                volume_key=value_at(arguments, "TransformResources.VolumeKmsKeyId"),
                output_key=value_at(arguments, "TransformOutput.KmsKeyId"),
                vpc=None,
            )


def _training_job(where: str, arguments: Mapping[str, Any]) -> _Job:
    return _Job(
        where=where,
        kind="training",
        network={
            "EnableNetworkIsolation": arguments.get("EnableNetworkIsolation"),
            "EnableInterContainerTrafficEncryption": arguments.get("EnableInterContainerTrafficEncryption"),
        },
        volume_key=value_at(arguments, "ResourceConfig.VolumeKmsKeyId"),
        output_key=value_at(arguments, "OutputDataConfig.KmsKeyId"),
        vpc=arguments.get("VpcConfig"),
    )


def _jobs(resource: Resource) -> Iterator[_Job]:
    kind = resource.get("Type")
    props = _props(resource)
    if kind in MONITORING_JOB_TYPES:
        yield _monitoring_job("Properties", props, MONITORING_JOB_TYPES[kind][0], "JobResources")
    elif kind == "AWS::SageMaker::MonitoringSchedule":
        inline = value_at(props, "MonitoringScheduleConfig.MonitoringJobDefinition")
        if inline:
            yield _monitoring_job(
                "MonitoringScheduleConfig.MonitoringJobDefinition",
                inline,
                "MonitoringOutputConfig",
                "MonitoringResources",
            )
    elif kind == "AWS::SageMaker::Pipeline":
        yield from _pipeline_jobs(resource)


# --- rules ---------------------------------------------------------------------------------------


def _models(resource: Resource) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(location, CreateModel-shaped settings) of a model resource or of a pipeline's Model steps."""
    if resource.get("Type") == "AWS::SageMaker::Model":
        yield "Properties", _props(resource)
    elif resource.get("Type") == "AWS::SageMaker::Pipeline":
        definition = parse_pipeline_definition(resource) or {}
        for step in definition.get("Steps") or []:
            if step.get("Type") == "Model":
                yield f"PipelineDefinition.Steps[{step.get('Name')}]", step.get("Arguments") or {}


def _model_network_isolation(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    for where, model in _models(resource):
        if not _is_true(model.get("EnableNetworkIsolation")):
            yield f"{where}.EnableNetworkIsolation", "the model container may open network connections"


def _model_in_vpc(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    for where, model in _models(resource):
        vpc = model.get("VpcConfig")
        if not (_set(value_at(vpc, "Subnets")) and _set(value_at(vpc, "SecurityGroupIds"))):
            yield f"{where}.VpcConfig", "the model has no VPC subnets and security groups"


def _instance_variants(resource: Resource) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for index, variant in enumerate(_props(resource).get("ProductionVariants") or []):
        if isinstance(variant, Mapping) and "ServerlessConfig" not in variant:
            yield index, variant


def _endpoint_multi_instance(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    if resource.get("Type") != "AWS::SageMaker::EndpointConfig":
        return
    for index, variant in _instance_variants(resource):
        count = variant.get("InitialInstanceCount")
        if not isinstance(count, int) or count < 2:
            yield (
                f"Properties.ProductionVariants[{index}].InitialInstanceCount",
                (
                    f"variant {variant.get('VariantName')!r} starts {count!r} instance(s); one instance is one "
                    "availability zone and no capacity during a deployment"
                ),
            )


def _endpoint_config_kms(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    if resource.get("Type") != "AWS::SageMaker::EndpointConfig":
        return
    variants = [variant for _, variant in _instance_variants(resource)]
    if variants and not _set(_props(resource).get("KmsKeyId")) and not _any_local_storage(variants):
        yield "Properties.KmsKeyId", "the instance storage volumes use an AWS-owned key"
    async_key = value_at(_props(resource), "AsyncInferenceConfig.OutputConfig.KmsKeyId")
    if _props(resource).get("AsyncInferenceConfig") and not _set(async_key):
        yield (
            "Properties.AsyncInferenceConfig.OutputConfig.KmsKeyId",
            "async results are not encrypted with a platform key",
        )


def _any_local_storage(variants: list[Mapping[str, Any]]) -> bool:
    """A variant on local NVMe storage: SageMaker refuses KmsKeyId for the whole endpoint config."""
    from config.sagemaker_api import UnknownInstanceStorageError, has_local_storage

    for variant in variants:
        instance_type = variant.get("InstanceType")
        try:
            if isinstance(instance_type, str) and has_local_storage(instance_type):
                return True
        except (UnknownInstanceStorageError, ValueError):
            continue
    return False


def _endpoint_data_capture(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    if resource.get("Type") != "AWS::SageMaker::EndpointConfig":
        return
    capture = _props(resource).get("DataCaptureConfig")
    if not capture or value_at(capture, "EnableCapture") is False or capture.get("EnableCapture") == "false":
        yield "Properties.DataCaptureConfig", "requests and predictions are not captured for Model Monitor"
    elif not _set(capture.get("KmsKeyId")):
        yield "Properties.DataCaptureConfig.KmsKeyId", "captured requests are not encrypted with a platform key"


def _job_network_isolation(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    for job in _jobs(resource):
        # Transform jobs take their isolation from the model. A processing job that must call an
        # AWS API (Feature Store ingestion) is acknowledged on its own pipeline, with the reason.
        if job.kind != "transform" and not _is_true(value_at(job.network, "EnableNetworkIsolation")):
            yield f"{job.where}.EnableNetworkIsolation", f"{job.kind} job is not network-isolated"


def _job_inter_container_encryption(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    for job in _jobs(resource):
        if job.kind != "transform" and not _is_true(value_at(job.network, "EnableInterContainerTrafficEncryption")):
            yield (
                f"{job.where}.EnableInterContainerTrafficEncryption",
                f"{job.kind} job sends traffic between its instances unencrypted",
            )


def _local_storage_only(job: _Job, resource: Resource) -> bool:
    """Whether every instance type the job can run on has local NVMe storage (no EBS volume to encrypt:
    the instance's hardware does, and SageMaker refuses a volume key there)."""
    from config.sagemaker_api import UnknownInstanceStorageError, has_local_storage
    from policy.sagemaker_api_rules import instance_requests

    for request in instance_requests(resource):
        if request.where.startswith((job.where + ".", f"Properties.{job.where}.")) and request.instance_types:
            try:
                return all(has_local_storage(t) for t in request.instance_types)
            except (UnknownInstanceStorageError, ValueError):
                return False
    return False


def _job_kms(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    for job in _jobs(resource):
        if not _set(job.volume_key) and not _local_storage_only(job, resource):
            yield f"{job.where}.VolumeKmsKeyId", f"{job.kind} job volumes use an AWS-owned key"
        if not _set(job.output_key):
            yield f"{job.where}.OutputKmsKeyId", f"{job.kind} job outputs are not encrypted with a platform key"


def _job_vpc(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    for job in _jobs(resource):
        if job.kind == "transform":
            continue  # a transform job runs in its model's VPC
        if not (_set(value_at(job.vpc, "Subnets")) and _set(value_at(job.vpc, "SecurityGroupIds"))):
            yield f"{job.where}.VpcConfig", f"{job.kind} job does not run in the platform VPC"


def _feature_group_kms(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    if resource.get("Type") != "AWS::SageMaker::FeatureGroup":
        return
    props = _props(resource)
    online = props.get("OnlineStoreConfig")
    if online and _is_true(online.get("EnableOnlineStore")) and not _set(value_at(online, "SecurityConfig.KmsKeyId")):
        yield (
            "Properties.OnlineStoreConfig.SecurityConfig.KmsKeyId",
            "online store is not encrypted with a platform key",
        )
    offline = props.get("OfflineStoreConfig")
    if offline and not _set(value_at(offline, "S3StorageConfig.KmsKeyId")):
        yield (
            "Properties.OfflineStoreConfig.S3StorageConfig.KmsKeyId",
            "offline store is not encrypted with a platform key",
        )


def _pipeline_readable(logical_id: str, resource: Resource) -> Iterator[tuple[str, str]]:
    if resource.get("Type") == "AWS::SageMaker::Pipeline" and parse_pipeline_definition(resource) is None:
        yield (
            "Properties.PipelineDefinition",
            "the definition is not inline JSON these rules can read (S3 location or unsupported intrinsic)",
        )


RULES: tuple[Rule, ...] = (
    Rule(
        f"{PACK_NAME}-ModelNetworkIsolation",
        "SageMaker models run with network isolation (Security Hub SageMaker.5).",
        "Set EnableNetworkIsolation: true on the model.",
        _model_network_isolation,
    ),
    Rule(
        f"{PACK_NAME}-ModelInVpc",
        "SageMaker models run in the platform VPC.",
        "Set VpcConfig with the isolated subnets and the inference security group.",
        _model_in_vpc,
    ),
    Rule(
        f"{PACK_NAME}-EndpointMultiInstance",
        "Every instance-based production variant starts at least 2 instances (Security Hub SageMaker.4).",
        "Set InitialInstanceCount >= 2, or acknowledge in an environment that accepts one instance.",
        _endpoint_multi_instance,
    ),
    Rule(
        f"{PACK_NAME}-EndpointConfigKms",
        "Endpoint configs encrypt instance storage and async results with a platform KMS key.",
        "Set KmsKeyId (and AsyncInferenceConfig.OutputConfig.KmsKeyId for async endpoints).",
        _endpoint_config_kms,
    ),
    Rule(
        f"{PACK_NAME}-EndpointDataCapture",
        "Endpoint configs capture requests and predictions, encrypted with a platform KMS key.",
        "Set DataCaptureConfig with EnableCapture: true and KmsKeyId.",
        _endpoint_data_capture,
    ),
    Rule(
        f"{PACK_NAME}-JobNetworkIsolation",
        "Training, processing and monitoring jobs run with network isolation "
        "(Security Hub SageMaker.11, .12, .14, .20, .25).",
        "Set EnableNetworkIsolation: true in the job's network settings.",
        _job_network_isolation,
    ),
    Rule(
        f"{PACK_NAME}-JobInterContainerEncryption",
        "Jobs encrypt traffic between their instances (Security Hub SageMaker.9, .10, .13, .15, .22).",
        "Set EnableInterContainerTrafficEncryption: true in the job's network settings.",
        _job_inter_container_encryption,
    ),
    Rule(
        f"{PACK_NAME}-JobKms",
        "Jobs encrypt their storage volumes and outputs with platform KMS keys.",
        "Set the volume KMS key and the output KMS key of the job.",
        _job_kms,
    ),
    Rule(
        f"{PACK_NAME}-JobInVpc",
        "Jobs run in the platform VPC.",
        "Set VpcConfig with the isolated subnets and the job security group.",
        _job_vpc,
    ),
    Rule(
        f"{PACK_NAME}-PipelineDefinitionReadable",
        "Pipeline definitions are inline JSON, so the job rules above can check every step.",
        "Give PipelineDefinitionBody as JSON (CDK tokens are fine), not an S3 location.",
        _pipeline_readable,
    ),
    Rule(
        f"{PACK_NAME}-FeatureGroupKms",
        "Feature groups encrypt the online and the offline store with a platform KMS key "
        "(Security Hub SageMaker.17, .18).",
        "Set OnlineStoreConfig.SecurityConfig.KmsKeyId and OfflineStoreConfig.S3StorageConfig.KmsKeyId.",
        _feature_group_kms,
    ),
)
RULES_BY_ID = {rule.id: rule for rule in RULES}


# --- rules over all templates of one stage (environment) -----------------------------------------


@dataclass(frozen=True)
class StageRule:
    """A rule that needs every template of one environment: what it checks spans stacks."""

    id: str
    description: str
    fix: str
    # (template key, logical ID, location, detail) of each finding, given the stage's templates by key.
    check: Callable[[Mapping[str, Mapping[str, Any]]], Iterator[tuple[str, str, str, str]]]


def _captures(config: Resource) -> bool:
    capture = _props(config).get("DataCaptureConfig")
    return isinstance(capture, Mapping) and bool(capture) and capture.get("EnableCapture") not in (False, "false")


def _referenced_id(value: Any) -> str | None:
    if isinstance(value, Mapping) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, Mapping) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def _captured_endpoints(templates: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[Any, str, str]]:
    """(endpoint name, template key, endpoint config logical ID) of every endpoint whose config captures."""
    for key, template in templates.items():
        resources = template.get("Resources") or {}
        for resource in resources.values():
            if resource.get("Type") != "AWS::SageMaker::Endpoint":
                continue
            config_id = _referenced_id(_props(resource).get("EndpointConfigName"))
            if config_id and _captures(resources.get(config_id) or {}):
                yield _props(resource).get("EndpointName"), key, config_id


def _monitored_endpoints(templates: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Endpoints with a Model Monitor schedule, or with an enabled schedule that starts a pipeline whose
    steps name the endpoint (the platform backend's ResolveBaselines step: ``endpoint_name``)."""
    monitored: set[str] = set()
    pipelines: dict[str, set[str]] = {}
    scheduled: set[str] = set()
    for template in templates.values():
        for resource in (template.get("Resources") or {}).values():
            kind, props = resource.get("Type"), _props(resource)
            if kind == "AWS::SageMaker::MonitoringSchedule" and isinstance(props.get("EndpointName"), str):
                monitored.add(props["EndpointName"])
            elif kind == "AWS::SageMaker::Pipeline" and isinstance(props.get("PipelineName"), str):
                steps = list((parse_pipeline_definition(resource) or {}).get("Steps") or [])
                names = set()
                while steps:
                    step = steps.pop()
                    arguments = step.get("Arguments") or {}
                    if step.get("Type") == "Condition":
                        steps += list(arguments.get("IfSteps") or []) + list(arguments.get("ElseSteps") or [])
                    elif step.get("Type") == "Lambda" and isinstance(arguments.get("endpoint_name"), str):
                        names.add(arguments["endpoint_name"])
                pipelines[props["PipelineName"]] = names
            elif kind == "AWS::Scheduler::Schedule" and props.get("State", "ENABLED") == "ENABLED":
                target = _render(value_at(props, "Target.Arn")) or ""
                if ":pipeline/" in target:
                    scheduled.add(target.rsplit(":pipeline/", 1)[1])
    for name, endpoints in pipelines.items():
        if name in scheduled:
            monitored |= endpoints
    return monitored


def _endpoint_monitored(templates: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, str, str, str]]:
    monitored = _monitored_endpoints(templates)
    for name, key, config_id in _captured_endpoints(templates):
        if not isinstance(name, str):
            yield (
                key,
                config_id,
                "Properties.DataCaptureConfig",
                "the endpoint's name is not literal, so no monitoring can be shown to watch it",
            )
        elif name not in monitored:
            yield (
                key,
                config_id,
                "Properties.DataCaptureConfig",
                (
                    f"endpoint {name} captures requests but no monitoring schedule or scheduled monitoring "
                    "pipeline of the environment watches it"
                ),
            )


STAGE_RULES: tuple[StageRule, ...] = (
    StageRule(
        f"{PACK_NAME}-EndpointMonitored",
        "Every endpoint whose config captures data is monitored in the same environment: a Model Monitor "
        "schedule, or an enabled schedule starting the platform's monitoring pipeline for that endpoint.",
        "Enable [environments.monitoring] for the environment (either backend).",
        _endpoint_monitored,
    ),
)
STAGE_RULES_BY_ID = {rule.id: rule for rule in STAGE_RULES}


def check_stage(
    templates: Mapping[str, Mapping[str, Any]], rules: tuple[StageRule, ...] = STAGE_RULES
) -> list[tuple[str, Finding]]:
    """Every finding of ``rules`` across the templates of one environment, with its template's key."""
    return [
        (key, Finding(rule.id, logical_id, location, detail))
        for rule in rules
        for key, logical_id, location, detail in rule.check(templates)
    ]


def stage_of(template_path: str) -> str:
    """The stage a synthesized template belongs to: its nested cloud assembly's folder."""
    return str(Path(template_path).parent)


def check_template(template: Mapping[str, Any], rules: tuple[Rule, ...] = RULES) -> list[Finding]:
    """Every finding of ``rules`` in one CloudFormation template."""
    findings = []
    for logical_id, resource in sorted((template.get("Resources") or {}).items()):
        for rule in rules:
            found = (
                rule.check(logical_id, resource, template) if rule.whole_template else rule.check(logical_id, resource)
            )
            for location, detail in found:
                findings.append(Finding(rule.id, logical_id, location, detail))
    return findings


@jsii.implements(IPolicyValidationPlugin)
class TemplateRuleChecks:
    """Runs a pack of template rules on every synthesized template as a CDK policy-validation plugin."""

    def __init__(self, pack_name: str, rules: tuple[Rule, ...], stage_rules: tuple[StageRule, ...] = ()) -> None:
        self._pack_name, self._rules, self._stage_rules = pack_name, rules, stage_rules
        self._by_id: dict[str, Rule | StageRule] = {rule.id: rule for rule in rules}
        self._by_id.update({rule.id: rule for rule in stage_rules})

    @property
    def name(self) -> str:
        return self._pack_name

    @property
    def version(self) -> str:
        return "1.0.0"

    @property
    def rule_ids(self) -> list[str]:
        return list(self._by_id)

    def validate(self, context: IPolicyValidationContext) -> PolicyValidationPluginReport:
        by_rule: dict[str, list[PolicyViolatingResource]] = {}
        details: dict[str, set[str]] = {}
        stages: dict[str, dict[str, Mapping[str, Any]]] = {}

        def add(template_path: str, finding: Finding) -> None:
            by_rule.setdefault(finding.rule_id, []).append(
                PolicyViolatingResource(
                    resource_logical_id=finding.logical_id, template_path=template_path, locations=[finding.location]
                )
            )
            details.setdefault(finding.rule_id, set()).add(finding.detail)

        for template_path in context.template_paths:
            template = json.loads(Path(template_path).read_text())
            stages.setdefault(stage_of(template_path), {})[template_path] = template
            for finding in check_template(template, self._rules):
                add(template_path, finding)
        if self._stage_rules:
            for templates in stages.values():
                for template_path, finding in check_stage(templates, self._stage_rules):
                    add(template_path, finding)
        violations = [
            PolicyViolation(
                rule_name=rule_id,
                description=f"{self._by_id[rule_id].description} Found: {'; '.join(sorted(details[rule_id]))}."
                + (
                    f" (SageMaker API reference: {source})"
                    if (source := getattr(self._by_id[rule_id], "source", ""))
                    else ""
                ),
                fix=self._by_id[rule_id].fix,
                severity="error",
                violating_resources=resources,
            )
            for rule_id, resources in sorted(by_rule.items())
        ]
        return PolicyValidationPluginReport(success=not violations, violations=violations)


class MlPlatformChecks(TemplateRuleChecks):
    """Runs :data:`RULES` (the MlPlatform pack) on every synthesized template."""

    def __init__(self) -> None:
        super().__init__(PACK_NAME, RULES, STAGE_RULES)
