"""A SageMaker endpoint serving approved model packages: variants, capture, scaling, safe rollout.

One switch (``settings.inference_type``) picks real-time instances, serverless or asynchronous
inference; everything else follows from it:

- real-time: instance variants with traffic weights (champion / challenger) and an optional shadow
  variant, per-variant target-tracking autoscaling on invocations per instance, blue/green updates
  with canary or linear traffic shifting that roll back on the variants' 5xx and p99-latency alarms;
- asynchronous: the same instances, results and failures written encrypted to S3 with SNS
  notifications, scaling on the request backlog (down to zero outside protected environments);
- serverless: one variant that scales to zero. SageMaker offers no VPC, network isolation, data
  capture or KMS volume key for serverless endpoints; those findings are acknowledged here, and
  config refuses serverless for staging and prod.

Models run network-isolated in the platform's subnets with the inference security group (not
serverless), requests and predictions are captured encrypted for Model Monitor, the storage volume
is encrypted with the model key (instance types with local NVMe storage have no EBS volume: their
storage is encrypted by the instance's hardware, and SageMaker refuses a key for them), the
endpoint's log group (``/aws/sagemaker/Endpoints/<name>``) exists with the logs key and a retention,
and every alarm notifies an encrypted SNS topic.

The endpoint config carries the metadata :mod:`policy.endpoint_variant_guard` reads to refuse, at
synth, removing or changing the instance type of a variant registered with Application Auto Scaling.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence

from aws_cdk import CfnCondition, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from config import ServingSettings
from config.sagemaker_api import ENDPOINT_LOCAL_STORAGE_SENTENCE, has_local_storage
from platform_constructs.retention import log_retention
from policy.acknowledge import acknowledge, acknowledge_all, skip_checkov
from policy.endpoint_variant_guard import VARIANT_LOCK_METADATA_KEY

SHADOW = "Shadow"
LOCAL_STORAGE_REASON = (
    "The endpoint's instance type has local NVMe storage, which a hardware module on the instance encrypts; "
    "SageMaker refuses KmsKeyId for it (CreateEndpointConfig: " + ENDPOINT_LOCAL_STORAGE_SENTENCE + ")"
)
KMS_CONFIG_RULES = tuple(
    f"{pack}-SageMakerEndpointConfigurationKMSKeyConfigured"
    for pack in ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321")
)
SERVERLESS_LIMITS = (
    "SageMaker Serverless Inference supports no VPC, network isolation or data capture (AWS documentation); "
    "config allows serverless in dev only, where scaling to zero matters more."
)


def _scaling_role(stack: Stack) -> str:
    """Application Auto Scaling's service-linked role for SageMaker endpoints (created by the service)."""
    return stack.format_arn(
        service="iam",
        region="",
        resource="role",
        resource_name="aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
    )


class ModelEndpoint(Construct):
    """Models, endpoint config, endpoint, autoscaling, alarms and a dashboard for one endpoint.

    ``model_packages`` maps each variant name (and ``Shadow`` if configured) to the ARN of the
    model package it serves; ``condition`` (optional) makes every resource conditional, so an
    environment without an approved model deploys everything else.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        endpoint_name: str,
        settings: ServingSettings,
        model_packages: Mapping[str, str],
        execution_role: iam.IRole,
        subnet_ids: Sequence[str],
        security_group_ids: Sequence[str],
        model_key: kms.IKey,
        data_key: kms.IKey,
        capture_uri: str,
        async_output_uri: str,
        alarm_topic: sns.ITopic,
        async_topics: tuple[sns.ITopic, sns.ITopic] | None = None,
        condition: CfnCondition | None = None,
        logs_key: kms.IKey | None = None,
        log_retention_days: int = 365,
        retain: bool = True,
    ) -> None:
        super().__init__(scope, id_)
        self.endpoint_name = endpoint_name
        self.settings = settings
        serverless = settings.inference_type == "serverless"
        local_storage = not serverless and has_local_storage(settings.instance_type)
        variant_names = [v.name for v in settings.variants]
        shadow = settings.shadow_variant

        self.models: dict[str, sagemaker.CfnModel] = {}
        for name in [*variant_names, *([SHADOW] if shadow else [])]:
            model = sagemaker.CfnModel(
                self,
                f"{name}Model",
                execution_role_arn=execution_role.role_arn,
                containers=[sagemaker.CfnModel.ContainerDefinitionProperty(model_package_name=model_packages[name])],
                enable_network_isolation=None if serverless else True,
                vpc_config=None
                if serverless
                else sagemaker.CfnModel.VpcConfigProperty(
                    subnets=list(subnet_ids), security_group_ids=list(security_group_ids)
                ),
            )
            self.models[name] = model
            if serverless:
                acknowledge(model, "MlPlatform-ModelNetworkIsolation", SERVERLESS_LIMITS)
                acknowledge(model, "MlPlatform-ModelInVpc", SERVERLESS_LIMITS)
                skip_checkov(model, "CKV_AWS_370", SERVERLESS_LIMITS)

        self.config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[self._variant(v.name, v.weight) for v in settings.variants],
            shadow_production_variants=[self._variant(SHADOW, 1.0)] if shadow else None,
            kms_key_id=None if serverless or local_storage else model_key.key_arn,
            data_capture_config=None
            if serverless
            else sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=settings.capture_sampling_percentage,
                destination_s3_uri=capture_uri,
                kms_key_id=data_key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
                capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                    csv_content_types=["text/csv"], json_content_types=["application/json"]
                ),
            ),
            async_inference_config=self._async_config(async_output_uri, data_key, async_topics)
            if settings.inference_type == "async"
            else None,
        )
        if not serverless and settings.initial_instance_count < 2:  # config allows this in dev only
            acknowledge(
                self.config,
                "MlPlatform-EndpointMultiInstance",
                "A dev endpoint runs one instance per variant to save cost; config requires two or more "
                "in staging and prod (Security Hub SageMaker.4).",
            )
        if serverless:
            acknowledge(self.config, "MlPlatform-EndpointDataCapture", SERVERLESS_LIMITS)
            acknowledge_all(
                self.config,
                KMS_CONFIG_RULES,
                "Serverless endpoints have no customer storage volume to encrypt: SageMaker manages their "
                "storage, and KmsKeyId applies to instance-based variants only.",
            )
        if local_storage:
            acknowledge_all(self.config, KMS_CONFIG_RULES, LOCAL_STORAGE_REASON)
            skip_checkov(self.config, "CKV_AWS_98", LOCAL_STORAGE_REASON)
        # Which variants Application Auto Scaling registers, with their instance types (the guard
        # compares them with config/endpoint_variants.lock.json).
        self.config.add_metadata(
            VARIANT_LOCK_METADATA_KEY,
            {
                "lock": endpoint_name,
                "autoscaled": {}
                if serverless or not settings.autoscaling
                else dict.fromkeys(variant_names, settings.instance_type),
            },
        )

        self.alarms = self._alarms(variant_names, alarm_topic)
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.config.attr_endpoint_config_name,
            # Keep the instance counts autoscaling set when a new config rolls out; weights follow config.
            retain_all_variant_properties=True,
            exclude_retained_variant_properties=[
                sagemaker.CfnEndpoint.VariantPropertyProperty(variant_property_type="DesiredWeight")
            ],
            deployment_config=None if serverless else self._deployment_config(),
        )
        self.scaling_targets = [] if serverless or not settings.autoscaling else self._autoscaling(variant_names)
        self.dashboard = self._dashboard(variant_names)

        if condition is not None:
            for construct in self.node.find_all():
                if isinstance(construct, CfnResource):
                    construct.cfn_options.condition = condition

        # SageMaker writes the endpoint's container logs here; created first (not conditional), so that
        # SageMaker never creates it unencrypted and kept forever.
        self.log_group: logs.LogGroup | None = None
        if logs_key is not None:
            self.log_group = logs.LogGroup(
                self,
                "Logs",
                log_group_name=f"/aws/sagemaker/Endpoints/{endpoint_name}",
                encryption_key=logs_key,
                retention=log_retention(log_retention_days),
                removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            )
            self.endpoint.node.add_dependency(self.log_group)

    # --- pieces -------------------------------------------------------------------------------------

    def _variant(self, name: str, weight: float) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        s = self.settings
        if s.inference_type == "serverless":
            return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=name,
                model_name=self.models[name].attr_model_name,
                initial_variant_weight=weight,
                serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                    memory_size_in_mb=s.serverless_memory_mb, max_concurrency=s.serverless_max_concurrency
                ),
            )
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=name,
            model_name=self.models[name].attr_model_name,
            initial_variant_weight=weight,
            instance_type=s.instance_type,
            initial_instance_count=s.initial_instance_count,
            model_data_download_timeout_in_seconds=s.model_download_timeout_seconds,
            container_startup_health_check_timeout_in_seconds=s.container_startup_timeout_seconds,
        )

    def _async_config(
        self, output_uri: str, key: kms.IKey, topics: tuple[sns.ITopic, sns.ITopic] | None
    ) -> sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty:
        if topics is None:
            raise ValueError("an asynchronous endpoint needs its success and error topics")
        success, error = topics
        return sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
            output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                s3_output_path=f"{output_uri}/results",
                s3_failure_path=f"{output_uri}/failures",
                kms_key_id=key.key_arn,
                notification_config=sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                    success_topic=success.topic_arn, error_topic=error.topic_arn
                ),
            ),
            client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                max_concurrent_invocations_per_instance=self.settings.async_max_concurrent_invocations
            ),
        )

    def _deployment_config(self) -> sagemaker.CfnEndpoint.DeploymentConfigProperty:
        s = self.settings
        capacity = sagemaker.CfnEndpoint.CapacitySizeProperty
        routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
            type={"canary": "CANARY", "linear": "LINEAR", "all_at_once": "ALL_AT_ONCE"}[s.deployment],
            wait_interval_in_seconds=s.baking_seconds,
            canary_size=capacity(type="CAPACITY_PERCENT", value=s.canary_percent) if s.deployment == "canary" else None,
            linear_step_size=capacity(type="CAPACITY_PERCENT", value=s.linear_step_percent)
            if s.deployment == "linear"
            else None,
        )
        return sagemaker.CfnEndpoint.DeploymentConfigProperty(
            blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                traffic_routing_configuration=routing,
                termination_wait_in_seconds=300,
                maximum_execution_timeout_in_seconds=min(28800, max(600, 4 * s.baking_seconds + 3600)),
            ),
            auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name) for a in self.rollback_alarms]
            ),
        )

    def _metric(self, name: str, variant: str, statistic: str, namespace: str = "AWS/SageMaker") -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": variant},
            statistic=statistic,
            period=Duration.minutes(1),
        )

    def _alarms(self, variants: Sequence[str], topic: sns.ITopic) -> list[cloudwatch.Alarm]:
        s = self.settings
        action = cw_actions.SnsAction(topic)
        alarms: list[cloudwatch.Alarm] = []
        self.rollback_alarms: list[cloudwatch.Alarm] = []
        for variant in variants:
            errors = cloudwatch.Alarm(
                self,
                f"{variant}ServerErrorsAlarm",
                alarm_name=f"{self.endpoint_name}-{variant}-5xx",
                alarm_description=f"{variant}: more than {s.rollback_5xx_per_minute} 5xx responses a minute; "
                "rolls a deployment back",
                metric=self._metric("Invocation5XXErrors", variant, "Sum"),
                threshold=s.rollback_5xx_per_minute,
                evaluation_periods=2,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            latency = cloudwatch.Alarm(
                self,
                f"{variant}LatencyAlarm",
                alarm_name=f"{self.endpoint_name}-{variant}-latency-p99",
                alarm_description=f"{variant}: model latency p99 above {s.latency_p99_ms} ms; rolls a deployment back",
                metric=self._metric("ModelLatency", variant, "p99"),
                threshold=s.latency_p99_ms * 1000,  # ModelLatency is in microseconds
                evaluation_periods=3,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            self.rollback_alarms += [errors, latency]
            alarms += [errors, latency]
            if s.inference_type != "serverless":
                for metric, limit in (("CPUUtilization", 80), ("MemoryUtilization", 85)):
                    alarms.append(
                        cloudwatch.Alarm(
                            self,
                            f"{variant}{metric}Alarm",
                            alarm_description=f"{variant}: {metric} above {limit}% for 5 minutes (scale or resize)",
                            metric=self._metric(metric, variant, "Average", "/aws/sagemaker/Endpoints"),
                            threshold=limit,
                            evaluation_periods=5,
                            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                        )
                    )
        for alarm in alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        return alarms

    def _autoscaling(self, variants: Sequence[str]) -> list[appscaling.ScalableTarget]:
        s = self.settings
        stack = Stack.of(self)
        role = iam.Role.from_role_arn(self, "ScalingRole", _scaling_role(stack), mutable=False)
        targets = []
        for variant in variants:
            target = appscaling.ScalableTarget(
                self,
                f"{variant}Scaling",
                service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
                resource_id=f"endpoint/{self.endpoint_name}/variant/{variant}",
                scalable_dimension="sagemaker:variant:DesiredInstanceCount",
                min_capacity=s.min_capacity,
                max_capacity=s.max_capacity,
                role=role,
            )
            target.node.add_dependency(self.endpoint)
            if s.inference_type == "async":
                target.scale_to_track_metric(
                    "BacklogPerInstance",
                    target_value=float(s.async_max_concurrent_invocations),
                    custom_metric=cloudwatch.Metric(
                        namespace="AWS/SageMaker",
                        metric_name="ApproximateBacklogSizePerInstance",
                        dimensions_map={"EndpointName": self.endpoint_name},
                        statistic="Average",
                    ),
                    scale_in_cooldown=Duration.seconds(s.scale_in_cooldown_seconds),
                    scale_out_cooldown=Duration.seconds(s.scale_out_cooldown_seconds),
                )
            else:
                target.scale_to_track_metric(
                    "InvocationsPerInstance",
                    target_value=s.invocations_per_instance_target,
                    predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
                    scale_in_cooldown=Duration.seconds(s.scale_in_cooldown_seconds),
                    scale_out_cooldown=Duration.seconds(s.scale_out_cooldown_seconds),
                )
            targets.append(target)
        return targets

    def _dashboard(self, variants: Sequence[str]) -> cloudwatch.Dashboard:
        def graph(title: str, metric: str, statistic: str, namespace: str = "AWS/SageMaker") -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title,
                width=8,
                left=[self._metric(metric, v, statistic, namespace).with_(label=v) for v in variants],
            )

        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=self.endpoint_name)
        dashboard.add_widgets(
            graph("Invocations per minute", "Invocations", "Sum"),
            graph("5xx errors", "Invocation5XXErrors", "Sum"),
            graph("4xx errors", "Invocation4XXErrors", "Sum"),
        )
        dashboard.add_widgets(
            graph("Model latency p50 (µs)", "ModelLatency", "p50"),
            graph("Model latency p99 (µs)", "ModelLatency", "p99"),
            graph("Overhead latency p99 (µs)", "OverheadLatency", "p99"),
        )
        if self.settings.inference_type != "serverless":
            dashboard.add_widgets(
                graph("CPU %", "CPUUtilization", "Average", "/aws/sagemaker/Endpoints"),
                graph("Memory %", "MemoryUtilization", "Average", "/aws/sagemaker/Endpoints"),
                graph("Invocations per instance", "InvocationsPerInstance", "Sum"),
            )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", width=24, alarms=typing.cast(list[cloudwatch.IAlarm], self.alarms)
            )
        )
        return dashboard
