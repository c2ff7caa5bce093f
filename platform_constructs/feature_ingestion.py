"""The SageMaker Pipeline that ingests raw customer records into the feature group.

A pipeline of its own, not a step of the training pipeline: its job calls the Feature Store runtime,
so it cannot run network-isolated, and the guardrails of the training pipeline's role (which deny
unisolated processing jobs) stay strict. This pipeline's role may start processing jobs with one
role only, the ingestion role, which may put records into one feature group.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from config import FeatureStoreSettings, TrainingSettings
from platform_constructs.execution_role import ServiceRole
from platform_constructs.feature_store import allow_put_record
from platform_constructs.images import xgboost_image
from platform_constructs.job_tags import with_job_tags
from platform_constructs.pipeline_definition import IngestionInputs, build_ingestion_definition
from platform_constructs.sagemaker_guardrails import SageMakerGuardrails
from platform_constructs.sagemaker_network_policy import SageMakerNetworkPolicy
from policy.acknowledge import acknowledge

SAGEMAKER = iam.ServicePrincipal("sagemaker.amazonaws.com")
REPORT_PREFIX = "pipelines/"


class FeatureIngestionPipeline(Construct):
    """``IngestFeatures``: raw files -> validated records -> PutRecord, with a report of every reject."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline_name: str,
        feature_group_name: str,
        settings: TrainingSettings,
        feature_store: FeatureStoreSettings,
        code: s3_assets.Asset,
        raw_bucket: s3.IBucket,
        raw_prefix: str,
        processed_bucket: s3.IBucket,
        data_key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        security_group: ec2.ISecurityGroup,
        allowed_instance_types: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.pipeline_name = pipeline_name
        network = SageMakerNetworkPolicy(
            self,
            "JobNetworkPolicy",
            vpc=vpc,
            subnets=subnets,
            security_group=security_group,
            log_path="/aws/sagemaker/*",
        )
        # Processing jobs of this pipeline may run without network isolation (they call an AWS API);
        # every other guardrail (VPC, encrypted traffic, platform keys) still applies.
        self.guardrails = SageMakerGuardrails(
            self,
            "Guardrails",
            volume_keys=[data_key],
            output_keys=[data_key],
            isolate_processing=False,
            instance_types=allowed_instance_types,
        )

        self.ingestion_role = ServiceRole(
            self,
            "IngestionRole",
            assumed_by=SAGEMAKER,
            description=f"Feature ingestion job: puts records into {feature_group_name}",
            managed_policies=[network],
        )
        self.guardrails.attach_to(self.ingestion_role.role)
        self.ingestion_role.read_object(code.bucket, code.s3_object_key)
        self.ingestion_role.read_objects(
            raw_bucket,
            "",
            reason="Ingestion reads whatever raw data the execution's InputDataUri names inside the raw bucket; "
            "the bucket holds nothing else.",
        )
        report_prefix = f"{REPORT_PREFIX}{pipeline_name}/"
        self.ingestion_role.write_objects(
            processed_bucket,
            report_prefix,
            reason="Each execution writes its report and rejects under its own execution ID in this pipeline's prefix.",
        )
        allow_put_record(self.ingestion_role, feature_group_name, data_key)

        self.pipeline_role = ServiceRole(
            self, "PipelineRole", assumed_by=SAGEMAKER, description=f"SageMaker Pipelines: runs {pipeline_name}"
        )
        self.guardrails.attach_to(self.pipeline_role.role)
        self.pipeline_role.allow(
            [
                "sagemaker:CreateProcessingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:AddTags",
            ],
            [stack.format_arn(service="sagemaker", resource="processing-job", resource_name="*")],
            wildcard_reason="Pipeline executions name their processing jobs at run time; the statement covers "
            "processing jobs of this account and region only, and the guardrails deny unsafe ones.",
        )
        self.pipeline_role.allow(
            ["iam:PassRole"],
            [self.ingestion_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )

        definition = build_ingestion_definition(
            IngestionInputs(
                region=stack.region,
                settings=settings,
                image=xgboost_image(stack.region, "training"),
                code_uri=code.s3_object_url,
                raw_data_uri=f"s3://{raw_bucket.bucket_name}/{raw_prefix}",
                report_uri=f"s3://{processed_bucket.bucket_name}/{report_prefix}".rstrip("/"),
                role_arn=self.ingestion_role.role_arn,
                data_key_arn=data_key.key_arn,
                subnet_ids=list(subnets.subnet_ids),
                security_group_ids=[security_group.security_group_id],
                feature_group_name=feature_group_name,
                max_reject_fraction=feature_store.ingest_max_reject_fraction,
                allowed_instance_types=tuple(allowed_instance_types),
            )
        )
        self.definition = definition = with_job_tags(self, definition)
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=pipeline_name,
            pipeline_display_name=pipeline_name,
            pipeline_description=f"Ingest raw customer records into the feature group {feature_group_name}",
            role_arn=self.pipeline_role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": stack.to_json_string(definition)},
        )
        self.pipeline.node.add_dependency(self.pipeline_role.policy)
        acknowledge(
            self.pipeline,
            "MlPlatform-JobNetworkIsolation",
            "IngestFeatures calls the Feature Store runtime (PutRecord), which a network-isolated job cannot "
            "reach; it runs in the isolated subnets with no internet route and reaches AWS only through the "
            "VPC endpoints, and its role may put records into one feature group only.",
        )
        self.pipeline_arn = stack.format_arn(service="sagemaker", resource="pipeline", resource_name=pipeline_name)
