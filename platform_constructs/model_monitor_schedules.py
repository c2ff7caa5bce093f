"""The native monitoring backend, for accounts that still have SageMaker Model Monitor and Clarify.

AWS closed Model Monitor and Clarify to new customers on 2026-07-30; existing customers keep them.
With ``monitoring.backend = "model_monitor"`` the endpoint is watched by Model Monitor's four job types
(data quality, model quality, model bias, model explainability), each with a ``MonitoringSchedule``:

- baselines: the files baseline.py wrote for the served (champion) model version, given at deploy
  time as the parameter ``ServedBaselineUri`` (the version's baseline folder, the prefix of its
  registered ``DriftCheckBaselines``), the way the serving stack takes model packages; with ``none``
  (the default) nothing is scheduled: no endpoint yet;
- job definitions get generated names, so an update replaces them cleanly (a fixed name fails while
  the old definition is in use); schedules keep stable names, so the failure rule can name them;
- every job runs in the isolated subnets with the job security group, network-isolated, with
  encrypted inter-container traffic and KMS on volumes and outputs;
- the republisher (``functions/model_monitor_republisher.py``) maps each completed run's
  ``constraint_violations.json`` onto the platform's metric names, namespace and dimensions, so the
  alarms, dashboard and actions are the platform backend's;
- a failed or stopped run notifies the alarm topic (EventBridge, "SageMaker Processing Job State Change").

Model Monitor watches the endpoint's traffic as a whole, against the first variant's baselines: its
metrics carry that variant's name. Challenger comparisons exist in the platform backend only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import CfnCondition, CfnParameter, CfnResource, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from config import MonitoringSettings
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.execution_role import ServiceRole
from platform_constructs.images import clarify_image, model_monitor_image
from platform_constructs.pipeline_definition import BASELINE_FILES
from platform_constructs.platform_function import PlatformFunction
from platform_constructs.sagemaker_network_policy import SageMakerNetworkPolicy

NO_BASELINE = "none"
ENDPOINT_INPUT = "/opt/ml/processing/input/endpoint"
OUTPUT = "/opt/ml/processing/output"
# Schedule name suffix -> Model Monitor's MonitoringType (also the platform metrics' MonitoringType).
SCHEDULES = {
    "data-quality": "DataQuality",
    "model-quality": "ModelQuality",
    "model-bias": "ModelBias",
    "model-explainability": "ModelExplainability",
}
PREFIX_REASON = (
    "Model Monitor reads and writes many objects under the endpoint's prefix with keys it generates per run "
    "(capture hours, schedules); the endpoint's prefix is the unit of access."
)


def model_monitor_schedule_expression(settings: MonitoringSettings) -> str:
    """Model Monitor's cron forms: hourly ``cron(0 * ? * * *)``, every N hours ``cron(0 0/N ? * * *)``,
    daily ``cron(0 0 ? * * *)`` (CreateMonitoringSchedule, ScheduleConfig.ScheduleExpression)."""
    if settings.schedule_hours == 1:
        return "cron(0 * ? * * *)"
    if settings.schedule_hours == 24:
        return "cron(0 0 ? * * *)"
    return f"cron(0 0/{settings.schedule_hours} ? * * *)"


class ModelMonitorSchedules(Construct):
    """Four job definitions and schedules, the republisher and the failure alert for one endpoint."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        endpoint_name: str,
        variant: str,
        settings: MonitoringSettings,
        capture_bucket: s3.IBucket,
        monitoring_bucket: s3.IBucket,
        data_key: kms.IKey,
        logs_key: kms.IKey,
        ground_truth_uri: str,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        job_security_group: ec2.ISecurityGroup,
        function_security_group: ec2.ISecurityGroup,
        alerts: AlertTopic,
        log_retention_days: int,
        retain: bool,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.settings = settings
        self.endpoint_name = endpoint_name
        bucket = monitoring_bucket.bucket_name
        self.baseline_parameter = CfnParameter(
            stack,
            "ServedBaselineUri",
            type="String",
            default=NO_BASELINE,
            allowed_pattern=f"^{NO_BASELINE}$|^s3://{bucket}/baselines/[A-Za-z0-9._/-]+/$",
            constraint_description=f"the baseline folder of the served model version (s3://{bucket}/baselines/"
            f"<pipeline>/<execution>/, the prefix of its DriftCheckBaselines), or {NO_BASELINE}",
            description=f"Model Monitor baselines of the model version {endpoint_name} serves "
            f"({NO_BASELINE}: no endpoint yet, nothing scheduled)",
        )
        baseline = self.baseline_parameter.value_as_string
        self.has_baseline = CfnCondition(
            stack,
            "HasServedBaseline",
            expression=Fn.condition_not(Fn.condition_equals(baseline, NO_BASELINE)),
        )

        network_policy = SageMakerNetworkPolicy(
            self,
            "JobNetworkPolicy",
            vpc=vpc,
            subnets=subnets,
            security_group=job_security_group,
            log_path="/aws/sagemaker/*",
        )
        self.job_role = ServiceRole(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"Model Monitor jobs of {endpoint_name}",
            managed_policies=[network_policy],
        )
        role = self.job_role
        role.read_objects(capture_bucket, f"{endpoint_name}/", reason=PREFIX_REASON)  # capture and ground truth
        role.read_objects(
            monitoring_bucket,
            "baselines/",
            reason="Baselines live under keys the training pipeline generates per execution; the schedules read "
            "those of the served version.",
        )
        role.write_objects(monitoring_bucket, f"model-monitor/{endpoint_name}/", reason=PREFIX_REASON)

        def file(name: str) -> str:
            return f"{baseline}{BASELINE_FILES[name]}"

        def output_uri(kind: str) -> str:
            return f"s3://{bucket}/model-monitor/{endpoint_name}/{kind}"

        network = {
            "EnableNetworkIsolation": True,
            "EnableInterContainerTrafficEncryption": True,
            "VpcConfig": {
                "Subnets": list(subnets.subnet_ids),
                "SecurityGroupIds": [job_security_group.security_group_id],
            },
        }
        resources = {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": settings.instance_type,
                "VolumeSizeInGB": settings.volume_size_gb,
                "VolumeKmsKeyId": data_key.key_arn,
            }
        }

        def outputs(kind: str) -> dict[str, object]:
            return {
                "MonitoringOutputs": [
                    {"S3Output": {"S3Uri": output_uri(kind), "LocalPath": OUTPUT, "S3UploadMode": "EndOfJob"}}
                ],
                "KmsKeyId": data_key.key_arn,
            }

        def endpoint_input(*, labelled: bool) -> dict[str, object]:
            value: dict[str, object] = {
                "EndpointName": endpoint_name,
                "LocalPath": ENDPOINT_INPUT,
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            }
            if labelled:  # the capture one label delay back, whose labels have arrived
                delay = settings.label_delay_hours
                value |= {
                    # The endpoint answers with one score per row (text/csv): column 0 is the probability.
                    "ProbabilityAttribute": "0",
                    "ProbabilityThresholdAttribute": settings.thresholds.prediction_threshold,
                    "StartTimeOffset": f"-PT{delay + settings.window_hours}H",
                    "EndTimeOffset": f"-PT{delay}H" if delay else "-PT0H",
                }
            return value

        ground_truth = {"S3Uri": ground_truth_uri.rstrip("/")}
        stopping = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
        common = {
            "RoleArn": role.role_arn,
            "NetworkConfig": network,
            "JobResources": resources,
            "StoppingCondition": stopping,
        }
        region = stack.region
        definitions = {
            "data-quality": (
                "AWS::SageMaker::DataQualityJobDefinition",
                {
                    "DataQualityAppSpecification": {
                        "ImageUri": model_monitor_image(region),
                        "Environment": {"publish_cloudwatch_metrics": "Enabled"},
                    },
                    "DataQualityBaselineConfig": {
                        "ConstraintsResource": {"S3Uri": file("data_quality_constraints")},
                        "StatisticsResource": {"S3Uri": file("data_quality_statistics")},
                    },
                    "DataQualityJobInput": {"EndpointInput": endpoint_input(labelled=False)},
                    "DataQualityJobOutputConfig": outputs("data-quality"),
                },
            ),
            "model-quality": (
                "AWS::SageMaker::ModelQualityJobDefinition",
                {
                    "ModelQualityAppSpecification": {
                        "ImageUri": model_monitor_image(region),
                        "ProblemType": "BinaryClassification",
                    },
                    "ModelQualityBaselineConfig": {"ConstraintsResource": {"S3Uri": file("model_quality_constraints")}},
                    "ModelQualityJobInput": {
                        "EndpointInput": endpoint_input(labelled=True),
                        "GroundTruthS3Input": ground_truth,
                    },
                    "ModelQualityJobOutputConfig": outputs("model-quality"),
                },
            ),
            "model-bias": (
                "AWS::SageMaker::ModelBiasJobDefinition",
                {
                    "ModelBiasAppSpecification": {"ImageUri": clarify_image(region), "ConfigUri": file("bias_config")},
                    "ModelBiasBaselineConfig": {"ConstraintsResource": {"S3Uri": file("bias_analysis")}},
                    "ModelBiasJobInput": {
                        "EndpointInput": endpoint_input(labelled=True),
                        "GroundTruthS3Input": ground_truth,
                    },
                    "ModelBiasJobOutputConfig": outputs("model-bias"),
                },
            ),
            "model-explainability": (
                "AWS::SageMaker::ModelExplainabilityJobDefinition",
                {
                    "ModelExplainabilityAppSpecification": {
                        "ImageUri": clarify_image(region),
                        "ConfigUri": file("attribution_config"),
                    },
                    "ModelExplainabilityBaselineConfig": {
                        "ConstraintsResource": {"S3Uri": file("attribution_analysis")}
                    },
                    "ModelExplainabilityJobInput": {"EndpointInput": endpoint_input(labelled=False)},
                    "ModelExplainabilityJobOutputConfig": outputs("model-explainability"),
                },
            ),
        }
        self.job_definitions: dict[str, CfnResource] = {}
        self.schedules: dict[str, sagemaker.CfnMonitoringSchedule] = {}
        for kind, (resource_type, properties) in definitions.items():
            construct_id = "".join(part.title() for part in kind.split("-"))
            # Plain CloudFormation properties: the names are exactly the API's (the tests validate them
            # against botocore's CreateXJobDefinition shapes). No JobDefinitionName: generated.
            definition = CfnResource(
                self, f"{construct_id}JobDefinition", type=resource_type, properties={**common, **properties}
            )
            definition.cfn_options.condition = self.has_baseline
            definition.node.add_dependency(role.policy)
            # Ref of a job definition is its ARN, ...:<type>-job-definition/<name>.
            name = Fn.select(1, Fn.split("/", definition.ref))
            schedule = sagemaker.CfnMonitoringSchedule(
                self,
                f"{construct_id}Schedule",
                monitoring_schedule_name=self.schedule_name(kind),
                endpoint_name=endpoint_name,
                monitoring_schedule_config=sagemaker.CfnMonitoringSchedule.MonitoringScheduleConfigProperty(
                    monitoring_job_definition_name=name,
                    monitoring_type=SCHEDULES[kind],
                    schedule_config=sagemaker.CfnMonitoringSchedule.ScheduleConfigProperty(
                        schedule_expression=model_monitor_schedule_expression(settings)
                    ),
                ),
            )
            schedule.cfn_options.condition = self.has_baseline
            self.job_definitions[kind] = definition
            self.schedules[kind] = schedule

        schedule_arns = [
            stack.format_arn(
                service="sagemaker", resource="monitoring-schedule", resource_name=self.schedule_name(kind)
            )
            for kind in SCHEDULES
        ]
        self.republisher = PlatformFunction(
            self,
            "Republisher",
            handler="model_monitor_republisher.handler",
            description=f"Model Monitor runs of {endpoint_name} -> the platform's monitoring metrics",
            vpc=vpc,
            subnets=subnets,
            security_group=function_security_group,
            key=logs_key,
            alarm_topic=alerts.topic,
            log_retention_days=log_retention_days,
            retain=retain,
            environment={
                "METRIC_NAMESPACE": settings.metric_namespace,
                "ENDPOINT_NAME": endpoint_name,
                "VARIANT": variant,
                "SCHEDULES": json.dumps({self.schedule_name(k): t for k, t in SCHEDULES.items()}, sort_keys=True),
            },
        )
        self.republisher.role.read_objects(monitoring_bucket, f"model-monitor/{endpoint_name}/", reason=PREFIX_REASON)
        self.republisher.allow(
            ["cloudwatch:PutMetricData"],
            ["*"],
            {"StringEquals": {"cloudwatch:namespace": settings.metric_namespace}},
            wildcard_reason="PutMetricData has no resource-level permissions; the cloudwatch:namespace condition "
            f"limits the function to the monitoring namespace {settings.metric_namespace}.",
        )
        self.completed_rule = events.CfnRule(
            self,
            "CompletedRunRule",
            description=f"Republish the metrics of every completed Model Monitor run of {endpoint_name}",
            state="ENABLED",
            event_pattern=self.run_pattern(schedule_arns, ["Completed"]),
            targets=[
                events.CfnRule.TargetProperty(
                    id="Republisher",
                    arn=self.republisher.function_arn,
                    retry_policy=events.CfnRule.RetryPolicyProperty(
                        maximum_event_age_in_seconds=3600, maximum_retry_attempts=10
                    ),
                )
            ],
        )
        lambda_.CfnPermission(
            self,
            "CompletedRunRulePermission",
            action="lambda:InvokeFunction",
            function_name=self.republisher.function_arn,
            principal="events.amazonaws.com",
            source_arn=self.completed_rule.attr_arn,
        )
        self.failed_rule = alerts.alert_on_event(
            self,
            "FailedRunAlert",
            description=f"A Model Monitor run of {endpoint_name} failed or was stopped",
            event_pattern=self.run_pattern(schedule_arns, ["Failed", "Stopped"]),
            message=f"Model Monitor run <job> of {endpoint_name} (<schedule>) ended <status>: <reason>",
            message_paths={
                "job": "$.detail.ProcessingJobName",
                "schedule": "$.detail.MonitoringScheduleArn",
                "status": "$.detail.ProcessingJobStatus",
                "reason": "$.detail.FailureReason",
            },
        )

    def schedule_name(self, kind: str) -> str:
        return f"{self.endpoint_name}-{kind}"

    @staticmethod
    def run_pattern(schedule_arns: Sequence[str], statuses: Sequence[str]) -> dict[str, object]:
        """A processing job of one of the schedules reached one of ``statuses`` (the event's detail is
        DescribeProcessingJob's response, which names the job's MonitoringScheduleArn)."""
        return {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Processing Job State Change"],
            "detail": {"ProcessingJobStatus": list(statuses), "MonitoringScheduleArn": list(schedule_arns)},
        }
