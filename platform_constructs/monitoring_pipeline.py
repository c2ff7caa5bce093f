"""The platform monitoring backend: a SageMaker Pipeline per endpoint, started on a schedule.

ResolveBaselines (Lambda) -> CheckTraffic -> [MonitorEndpoint (processing: monitor.py) -> PublishMetrics (Lambda)]
                                           else [PublishNoTraffic (Lambda)]

- ``ResolveBaselines`` (``functions/monitoring_resolver.py``) finds what each variant serves and its
  registered baselines (endpoint -> endpoint config -> model -> model package), lists the window's
  capture and the labelled window's capture and ground truth into manifest files, and copies the
  served versions' baselines to ``serving/<endpoint>/<Variant>/``. No endpoint, or no traffic in the
  window, is a clean outcome: the condition skips the job.
- ``MonitorEndpoint`` runs ``monitor.py`` from the monitoring code bundle in the managed XGBoost image,
  in the isolated subnets with the job security group, network-isolated, volume and outputs
  encrypted with the data key, nothing downloaded at run time; its report, violations and metrics
  land under ``s3://<monitoring bucket>/reports/<endpoint>/<execution>/``.
- ``PublishMetrics`` (``functions/monitoring_metrics.py``) sends ``metrics.json`` to CloudWatch in the
  environment's namespace, through the "monitoring" VPC endpoint.

The definition is data, like the training pipeline's (``pipeline_definition.py``), and is validated
against botocore's API model in the tests. The pipeline is named ``<project>-<env>-monitoring``, so the
environment's alert on failed pipeline executions (by the ``pipeline/<project>-<env>-`` prefix) covers
a failed run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from constructs import Construct

from config import MonitoringSettings
from platform_constructs.execution_role import ServiceRole
from platform_constructs.images import xgboost_image
from platform_constructs.job_tags import with_job_tags
from platform_constructs.monitoring_assets import job_config_asset, monitoring_code_asset
from platform_constructs.pipeline_definition import (
    EXECUTION_ID,
    PIPELINE_FORMAT_VERSION,
    PROCESSING,
    RETRY_ON_CAPACITY,
    _JobContext,
    _processing_input,
    _processing_job,
    _processing_output,
    _script,
    get,
    instance_type_parameter,
    join,
)
from platform_constructs.platform_function import PlatformFunction
from platform_constructs.sagemaker_guardrails import SageMakerGuardrails
from platform_constructs.sagemaker_network_policy import SageMakerNetworkPolicy

SAGEMAKER = iam.ServicePrincipal("sagemaker.amazonaws.com")
RESOLVE, CHECK, MONITOR, PUBLISH, PUBLISH_SKIPPED = (
    "ResolveBaselines",
    "CheckTraffic",
    "MonitorEndpoint",
    "PublishMetrics",
    "PublishNoTraffic",
)
RESOLVER_OUTPUTS = (
    "status",
    "window_start",
    "window_end",
    "capture_manifest",
    "labelled_manifest",
    "baselines",
    "variants",
)
INPUT = f"{PROCESSING}/input"
REPORT = f"{PROCESSING}/output/report"
PREFIX_REASON = (
    "Monitoring runs read and write many objects under the endpoint's prefix with keys generated per run "
    "(capture hours, executions, variants); the endpoint's prefix is the unit of access."
)


def resolved(name: str) -> dict[str, str]:
    return get(f"Steps.{RESOLVE}.OutputParameters['{name}']")


@dataclass(frozen=True)
class MonitoringPipelineInputs:
    """Everything the monitoring pipeline definition refers to; values may be CDK tokens."""

    endpoint_name: str
    variants: Sequence[str]  # the endpoint's variants (the shadow included); the first is the champion
    settings: MonitoringSettings
    image: str
    code_uri: str
    config_uri: str
    config_file: str
    resolver_arn: str
    publisher_arn: str
    job_role_arn: str
    data_key_arn: str
    subnet_ids: list[str]
    security_group_ids: list[str]
    reports_uri: str  # s3://<monitoring bucket>/reports/<endpoint>
    # The environment's compute.allowed_instance_types (the instance-type parameter accepts only these).
    allowed_instance_types: tuple[str, ...] = ()


def _lambda_step(
    name: str, function_arn: str, arguments: dict[str, Any], outputs: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """A Lambda step: SageMaker invokes the function with ``arguments`` as the event and reads the
    returned JSON object's keys as the step's output parameters."""
    return {
        "Name": name,
        "Type": "Lambda",
        "Arguments": arguments,
        "FunctionArn": function_arn,
        "OutputParameters": [{"OutputName": output, "OutputType": kind} for output, kind in outputs],
        "TimeoutInSeconds": 300,
    }


def _manifest_input(name: str, uri: Any, local: str) -> dict[str, Any]:
    item = _processing_input(name, uri, local)
    item["S3Input"]["S3DataType"] = "ManifestFile"
    return item


def build_monitoring_definition(inputs: MonitoringPipelineInputs) -> dict[str, Any]:
    """The monitoring pipeline's definition (a JSON-ready dict, possibly holding CDK tokens)."""
    s = inputs.settings
    variants = list(inputs.variants)
    resolve = _lambda_step(
        RESOLVE,
        inputs.resolver_arn,
        {
            "endpoint_name": inputs.endpoint_name,
            "execution_id": EXECUTION_ID,
            "window_end": get("Parameters.WindowEnd"),
            "window_hours": s.window_hours,
            "schedule_hours": s.schedule_hours,
            "label_delay_hours": s.label_delay_hours,
            "variants": variants,
        },
        [*((name, "String") for name in RESOLVER_OUTPUTS), ("capture_files", "Integer")]
        + [(f"model_{variant}", "String") for variant in variants],
    )
    context = _JobContext(
        s.volume_size_gb,
        inputs.data_key_arn,
        inputs.subnet_ids,
        inputs.security_group_ids,
        instance_type=s.instance_type,
    )
    # Pipeline expressions (the window) are among the arguments: set after the helper, which takes strings.
    arguments: list[Any] = [
        "--capture",
        f"{INPUT}/capture",
        "--labelled-capture",
        f"{INPUT}/labelled/capture",
        "--ground-truth",
        f"{INPUT}/labelled/ground-truth",
        "--baselines",
        f"{INPUT}/baselines",
        "--models",
        f"{INPUT}/models",
        "--config",
        f"{INPUT}/config/{inputs.config_file}",
        "--endpoint",
        inputs.endpoint_name,
        "--window-start",
        resolved("window_start"),
        "--window-end",
        resolved("window_end"),
        "--champion-variant",
        variants[0],
        "--metric-namespace",
        s.metric_namespace,
        "--output",
        REPORT,
    ]
    job = _processing_job(
        context,
        image=inputs.image,
        role_arn=inputs.job_role_arn,
        entrypoint=_script("monitor"),
        job_inputs=[
            _processing_input("code", inputs.code_uri, f"{INPUT}/code"),
            _processing_input("config", inputs.config_uri, f"{INPUT}/config"),
            _manifest_input("capture", resolved("capture_manifest"), f"{INPUT}/capture"),
            _manifest_input("labelled", resolved("labelled_manifest"), f"{INPUT}/labelled"),
            _processing_input("baselines", resolved("baselines"), f"{INPUT}/baselines"),
            *(
                _processing_input(f"model-{variant}", resolved(f"model_{variant}"), f"{INPUT}/models/{variant}")
                for variant in variants
            ),
        ],
        outputs=[_processing_output("report", join(inputs.reports_uri, EXECUTION_ID), REPORT)],
        max_runtime=s.max_runtime_seconds,
    )
    job["AppSpecification"]["ContainerArguments"] = arguments
    monitor = {"Name": MONITOR, "Type": "Processing", "Arguments": job, "RetryPolicies": RETRY_ON_CAPACITY}
    report_uri = get(f"Steps.{MONITOR}.ProcessingOutputConfig.Outputs['report'].S3Output.S3Uri")
    publish = {
        **_lambda_step(
            PUBLISH,
            inputs.publisher_arn,
            {"mode": "report", "metrics_uri": join(report_uri, "metrics.json")},
            [("published", "Integer")],
        ),
        "DependsOn": [MONITOR],
    }
    skipped = _lambda_step(
        PUBLISH_SKIPPED,
        inputs.publisher_arn,
        {
            "mode": "skipped",
            "status": resolved("status"),
            "variants": resolved("variants"),
            "window_end": resolved("window_end"),
        },
        [("published", "Integer")],
    )
    check = {
        "Name": CHECK,
        "Type": "Condition",
        "Arguments": {
            "Conditions": [{"Type": "Equals", "LeftValue": resolved("status"), "RightValue": "run"}],
            "IfSteps": [monitor, publish],
            "ElseSteps": [skipped],
        },
    }
    return {
        "Version": PIPELINE_FORMAT_VERSION,
        "Metadata": {},
        "Parameters": [
            # "latest": the last complete interval; an ISO 8601 hour (2026-12-01T11:00:00Z) re-runs a past window.
            {"Name": "WindowEnd", "Type": "String", "DefaultValue": "latest"},
            instance_type_parameter(
                "ProcessingInstanceType", s.instance_type, "processing", inputs.allowed_instance_types
            ),
        ],
        "Steps": [resolve, check],
    }


def schedule_expression(settings: MonitoringSettings) -> str:
    """EventBridge Scheduler cron: ``start_minute`` past every ``schedule_hours``-th hour (UTC)."""
    hours = "*" if settings.schedule_hours == 1 else f"0/{settings.schedule_hours}"
    return f"cron({settings.start_minute} {hours} * * ? *)"


class MonitoringPipeline(Construct):
    """The pipeline, its two functions, its job and pipeline roles, and the schedule that starts it."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline_name: str,
        endpoint_name: str,
        variants: Sequence[str],
        settings: MonitoringSettings,
        capture_bucket: s3.IBucket,
        monitoring_bucket: s3.IBucket,
        models_bucket: s3.IBucket,
        data_key: kms.IKey,
        logs_key: kms.IKey,
        model_key: kms.IKey,
        model_package_group_name: str,
        ground_truth_uri: str,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        job_security_group: ec2.ISecurityGroup,
        function_security_group: ec2.ISecurityGroup,
        alarm_topic: sns.ITopic,
        log_retention_days: int,
        retain: bool,
        allowed_instance_types: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.pipeline_name = pipeline_name
        self.pipeline_arn = stack.format_arn(service="sagemaker", resource="pipeline", resource_name=pipeline_name)
        self.code = monitoring_code_asset(self, "MonitoringCode")
        self.config = job_config_asset(self, "MonitoringConfig", settings)

        def function(id_: str, handler: str, description: str, environment: dict[str, str]) -> PlatformFunction:
            return PlatformFunction(
                self,
                id_,
                handler=handler,
                description=description,
                vpc=vpc,
                subnets=subnets,
                security_group=function_security_group,
                key=logs_key,
                alarm_topic=alarm_topic,
                log_retention_days=log_retention_days,
                retain=retain,
                environment=environment,
                timeout_seconds=300,
                memory_mb=512,
            )

        self.resolver = function(
            "ResolveBaselines",
            "monitoring_resolver.handler",
            f"{pipeline_name}: finds each variant's model version, its baselines and the window's capture",
            {"MONITORING_BUCKET": monitoring_bucket.bucket_name, "GROUND_TRUTH_URI": ground_truth_uri},
        )
        self._allow_resolver(stack, endpoint_name, model_package_group_name, capture_bucket, monitoring_bucket)
        self.publisher = function(
            "PublishMetrics",
            "monitoring_metrics.handler",
            f"{pipeline_name}: publishes the run's metrics to CloudWatch",
            {"METRIC_NAMESPACE": settings.metric_namespace, "ENDPOINT_NAME": endpoint_name},
        )
        self.publisher.role.read_objects(monitoring_bucket, f"reports/{endpoint_name}/", reason=PREFIX_REASON)
        self.publisher.allow(
            ["cloudwatch:PutMetricData"],
            ["*"],
            {"StringEquals": {"cloudwatch:namespace": settings.metric_namespace}},
            wildcard_reason="PutMetricData has no resource-level permissions; the cloudwatch:namespace condition "
            f"limits the function to the monitoring namespace {settings.metric_namespace}.",
        )

        network = SageMakerNetworkPolicy(
            self,
            "JobNetworkPolicy",
            vpc=vpc,
            subnets=subnets,
            security_group=job_security_group,
            log_path="/aws/sagemaker/*",
        )
        self.guardrails = SageMakerGuardrails(
            self, "Guardrails", volume_keys=[data_key], output_keys=[data_key], instance_types=allowed_instance_types
        )
        self.job_role = ServiceRole(
            self,
            "JobRole",
            assumed_by=SAGEMAKER,
            description=f"{pipeline_name}: the monitoring job (monitor.py)",
            managed_policies=[network],
        )
        self.guardrails.attach_to(self.job_role.role)
        job = self.job_role
        for asset in (self.code, self.config):
            job.read_object(asset.bucket, asset.s3_object_key)
        job.read_objects(capture_bucket, f"{endpoint_name}/", reason=PREFIX_REASON)  # capture and ground truth
        job.read_objects(monitoring_bucket, f"runs/{endpoint_name}/", reason=PREFIX_REASON)  # manifests
        job.read_objects(monitoring_bucket, f"serving/{endpoint_name}/", reason=PREFIX_REASON)  # baselines
        job.read_objects(
            models_bucket,
            "pipelines/",
            reason="Model versions live under keys the training pipeline generates per execution; the "
            "pipeline's prefix is the unit of access.",
        )
        job.write_objects(monitoring_bucket, f"reports/{endpoint_name}/", reason=PREFIX_REASON)
        job.use_key(model_key, decrypt=True)

        self.pipeline_role = ServiceRole(
            self, "PipelineRole", assumed_by=SAGEMAKER, description=f"SageMaker Pipelines: runs {pipeline_name}"
        )
        self.guardrails.attach_to(self.pipeline_role.role)
        self._allow_pipeline(stack)

        definition = with_job_tags(
            self,
            build_monitoring_definition(
                MonitoringPipelineInputs(
                    allowed_instance_types=tuple(allowed_instance_types),
                    endpoint_name=endpoint_name,
                    variants=variants,
                    settings=settings,
                    image=xgboost_image(stack.region, "training"),
                    code_uri=self.code.s3_object_url,
                    config_uri=self.config.s3_object_url,
                    config_file=self.config.s3_object_key,
                    resolver_arn=self.resolver.function_arn,
                    publisher_arn=self.publisher.function_arn,
                    job_role_arn=self.job_role.role_arn,
                    data_key_arn=data_key.key_arn,
                    subnet_ids=list(subnets.subnet_ids),
                    security_group_ids=[job_security_group.security_group_id],
                    reports_uri=f"s3://{monitoring_bucket.bucket_name}/reports/{endpoint_name}",
                )
            ),
        )
        self.definition = definition
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=pipeline_name,
            pipeline_display_name=pipeline_name,
            pipeline_description=f"Model monitoring of {endpoint_name}: baselines, capture window, monitor.py, metrics",
            role_arn=self.pipeline_role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": stack.to_json_string(definition)},
            parallelism_configuration={"MaxParallelExecutionSteps": 1},
        )
        self.pipeline.node.add_dependency(self.pipeline_role.policy)
        self.schedule = self._schedule(stack, settings)
        self.schedule.node.add_dependency(self.pipeline)

    def _allow_resolver(
        self,
        stack: Stack,
        endpoint_name: str,
        group: str,
        capture_bucket: s3.IBucket,
        monitoring_bucket: s3.IBucket,
    ) -> None:
        def arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        resolver = self.resolver
        resolver.allow(["sagemaker:DescribeEndpoint"], [arn("endpoint", endpoint_name)])
        resolver.allow(
            ["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            [arn("endpoint-config", "*"), arn("model", "*")],
            wildcard_reason="Endpoint configs and models of the endpoint get generated names on every deploy; "
            "the function only describes them (read-only).",
        )
        resolver.allow(
            ["sagemaker:DescribeModelPackage"],
            [arn("model-package", f"{group}/*")],
            wildcard_reason="Every registration creates a new model version ARN (<group>/<version>); the "
            "statement covers versions of this environment's group only, read-only.",
        )
        role = resolver.role
        # Lists the endpoint's capture and ground truth (reads no record of it).
        role.allow(
            ["s3:ListBucket"], [capture_bucket.bucket_arn], {"StringLike": {"s3:prefix": [f"{endpoint_name}/*"]}}
        )
        role.read_objects(
            monitoring_bucket,
            "baselines/",
            reason="Baselines live under keys the training pipeline generates per execution; the resolver copies "
            "those of the served versions.",
        )
        role.read_objects(monitoring_bucket, f"serving/{endpoint_name}/", reason=PREFIX_REASON)
        role.write_objects(monitoring_bucket, f"serving/{endpoint_name}/", reason=PREFIX_REASON)
        role.write_objects(monitoring_bucket, f"runs/{endpoint_name}/", reason=PREFIX_REASON)
        role.allow(
            ["s3:DeleteObject"],
            [monitoring_bucket.arn_for_objects(f"serving/{endpoint_name}/*")],
            wildcard_reason="The copy of a variant's baselines is replaced when the variant serves a new version; "
            f"deletion is limited to serving/{endpoint_name}/.",
        )

    def _allow_pipeline(self, stack: Stack) -> None:
        role = self.pipeline_role
        role.allow(
            [
                "sagemaker:CreateProcessingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:AddTags",
            ],
            [stack.format_arn(service="sagemaker", resource="processing-job", resource_name="*")],
            wildcard_reason="Pipeline executions name their processing jobs at run time; the guardrails deny "
            "unsafe ones.",
        )
        role.allow(["lambda:InvokeFunction"], [self.resolver.function_arn, self.publisher.function_arn])
        role.allow(
            ["iam:PassRole"],
            [self.job_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )

    def _schedule(self, stack: Stack, settings: MonitoringSettings) -> scheduler.CfnSchedule:
        role = ServiceRole(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"EventBridge Scheduler: starts {self.pipeline_name} on its schedule",
        )
        role.allow(["sagemaker:StartPipelineExecution"], [self.pipeline_arn])
        return scheduler.CfnSchedule(
            self,
            "Schedule",
            description=f"Monitor: start {self.pipeline_name} every {settings.schedule_hours} h",
            schedule_expression=schedule_expression(settings),
            schedule_expression_timezone="UTC",
            # Exact start: the run reads the interval that ended just before it.
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.pipeline_arn,
                role_arn=role.role_arn,
                sage_maker_pipeline_parameters=scheduler.CfnSchedule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[]
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_event_age_in_seconds=min(3600, settings.schedule_seconds // 2), maximum_retry_attempts=3
                ),
            ),
        )
