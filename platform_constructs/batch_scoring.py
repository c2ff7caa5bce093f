"""Offline scoring of a dataset in S3 with batch transform, as a small SageMaker Pipeline.

Start it with the model package to use and the S3 prefix of the customers to score (CSV without a
header, the model's features in schema order, like captured requests); it creates a model from the
package and runs a transform job that writes one score per input line:

    aws sagemaker start-pipeline-execution --pipeline-name churn-prod-batch-scoring \\
        --pipeline-parameters Name=ModelPackageArn,Value=arn:... Name=InputDataUri,Value=s3://...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from platform_constructs.execution_role import ServiceRole
from platform_constructs.job_tags import with_job_tags
from platform_constructs.pipeline_definition import (
    EXECUTION_ID,
    PIPELINE_FORMAT_VERSION,
    get,
    instance_type_parameter,
    join,
    volume_key_field,
)
from platform_constructs.sagemaker_guardrails import SageMakerGuardrails


def batch_scoring_definition(
    *,
    model_role_arn: str,
    default_input_uri: str,
    output_uri: str,
    instance_type: str,
    data_key_arn: str,
    subnet_ids: Sequence[str],
    security_group_ids: Sequence[str],
    allowed_instance_types: Sequence[str] = (),
) -> dict[str, Any]:
    """CreateModel from the package, then a transform job. The volume key is left out on instance
    types with local NVMe storage (TransformResources: "You can't request a VolumeKmsKeyId when using
    an instance type with local storage"), and InstanceType accepts only allowed types of the same
    storage as the default."""
    model_step = {
        "Name": "CreateModel",
        "Type": "Model",
        "Arguments": {
            "ExecutionRoleArn": model_role_arn,
            "PrimaryContainer": {"ModelPackageName": get("Parameters.ModelPackageArn")},
            "VpcConfig": {"Subnets": list(subnet_ids), "SecurityGroupIds": list(security_group_ids)},
            "EnableNetworkIsolation": True,
        },
    }
    transform_step = {
        "Name": "Score",
        "Type": "Transform",
        "Arguments": {
            "ModelName": get("Steps.CreateModel.ModelName"),
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": get("Parameters.InputDataUri")}},
                "ContentType": "text/csv",
                "SplitType": "Line",
                "CompressionType": "None",
            },
            "TransformOutput": {
                "S3OutputPath": join(output_uri, EXECUTION_ID),
                "Accept": "text/csv",
                "AssembleWith": "Line",
                "KmsKeyId": data_key_arn,
            },
            "TransformResources": {
                "InstanceType": get("Parameters.InstanceType"),
                "InstanceCount": get("Parameters.InstanceCount"),
                **volume_key_field(instance_type, data_key_arn),
            },
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 6,
            "ModelClientConfig": {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1},
        },
    }
    return {
        "Version": PIPELINE_FORMAT_VERSION,
        "Metadata": {},
        "Parameters": [
            {"Name": "ModelPackageArn", "Type": "String"},
            {"Name": "InputDataUri", "Type": "String", "DefaultValue": default_input_uri},
            instance_type_parameter("InstanceType", instance_type, "transform", tuple(allowed_instance_types)),
            {"Name": "InstanceCount", "Type": "Integer", "DefaultValue": 1},
        ],
        "Steps": [model_step, transform_step],
    }


class BatchScoringPipeline(Construct):
    """A pipeline that scores a dataset with an approved model package, inside the VPC, encrypted."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline_name: str,
        model_role: ServiceRole,
        guardrails: SageMakerGuardrails,
        model_package_versions_arn: str,
        default_input_uri: str,
        output_uri: str,
        instance_type: str,
        data_key: kms.IKey,
        subnet_ids: Sequence[str],
        security_group_ids: Sequence[str],
        allowed_instance_types: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.role = ServiceRole(
            self,
            "PipelineRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker Pipelines: runs batch scoring",
        )
        guardrails.attach_to(self.role.role)

        def arn(resource: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name="*")

        self.role.allow(
            [
                "sagemaker:CreateModel",
                "sagemaker:DescribeModel",
                "sagemaker:CreateTransformJob",
                "sagemaker:DescribeTransformJob",
                "sagemaker:StopTransformJob",
                "sagemaker:AddTags",
            ],
            [arn("model"), arn("transform-job")],
            wildcard_reason="Pipeline executions name the model and the transform job at run time; the statement "
            "covers models and transform jobs of this account and region, and the guardrails deny unsafe ones.",
        )
        self.role.allow(
            ["sagemaker:DescribeModelPackage"],
            [model_package_versions_arn],
            wildcard_reason="The model version to score with is a parameter of each execution; only versions of "
            "this environment's model group.",
        )
        self.role.allow(
            ["iam:PassRole"],
            [model_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
        definition = batch_scoring_definition(
            model_role_arn=model_role.role_arn,
            default_input_uri=default_input_uri,
            output_uri=output_uri,
            instance_type=instance_type,
            data_key_arn=data_key.key_arn,
            subnet_ids=subnet_ids,
            security_group_ids=security_group_ids,
            allowed_instance_types=allowed_instance_types,
        )
        self.definition = definition = with_job_tags(self, definition)
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=pipeline_name,
            pipeline_display_name=pipeline_name,
            pipeline_description="Batch transform of a dataset in S3 with an approved churn model package",
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": stack.to_json_string(definition)},
        )
        self.pipeline.node.add_dependency(self.role.policy)
