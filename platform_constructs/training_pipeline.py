"""The SageMaker Pipeline that trains, evaluates, baselines and registers the churn model."""

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

from config import MonitoringSettings, TrainingSettings
from platform_constructs.code_bundle import training_code_bundle
from platform_constructs.execution_role import ServiceRole
from platform_constructs.images import xgboost_image
from platform_constructs.job_tags import with_job_tags
from platform_constructs.model_registry import REGISTER_ACTIONS, registry_arns
from platform_constructs.monitoring_assets import job_config_asset, monitoring_code_asset
from platform_constructs.pipeline_definition import (
    BUILD_TRAINING_SET,
    PipelineInputs,
    TrainingSetInputs,
    build_definition,
)
from platform_constructs.sagemaker_guardrails import SageMakerGuardrails
from platform_constructs.sagemaker_network_policy import SageMakerNetworkPolicy
from platform_constructs.training_set_source import TrainingSetSource, allow_training_set_queries
from policy.acknowledge import acknowledge

PIPELINE_PREFIX = "pipelines/"
CHECKPOINT_PREFIX = "checkpoints/"
BASELINE_PREFIX = "baselines/"
SAGEMAKER = iam.ServicePrincipal("sagemaker.amazonaws.com")
PREFIX_REASON = (
    "Jobs read and write many objects under one prefix of a platform bucket, with keys generated per "
    "execution; the prefix is the unit of access."
)
RAW_DATA_REASON = (
    "Preprocessing reads whatever raw data the execution's InputDataUri names inside the raw bucket; "
    "the bucket holds nothing else."
)


class TrainingPipeline(Construct):
    """A ``CfnPipeline`` with one least-privilege role per job type and the deny guardrails.

    Roles: ``PipelineRole`` (SageMaker Pipelines starts the jobs and registers the model; it may
    pass only the job roles), ``ProcessingRole`` (preprocess, evaluate), ``TrainingRole``
    (training and tuning jobs) and ``BaselineRole`` (the monitoring baselines: baseline.py). Every
    job runs in the isolated subnets with the job security group, network-isolated, with encrypted
    inter-container traffic and KMS-encrypted volumes and outputs.

    With ``settings.source == "feature_store"`` the pipeline starts with ``BuildTrainingSet`` in its
    own ``TrainingSetRole`` (one Athena workgroup, two tables, the offline store and the labels): the
    one job that is not network-isolated, because it calls Athena; the guardrails allow that only in
    ``training_set_source.security_group``, which reaches the VPC endpoints and S3 and nothing else.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline_name: str,
        settings: TrainingSettings,
        raw_bucket: s3.IBucket,
        processed_bucket: s3.IBucket,
        model_artifacts_bucket: s3.IBucket,
        monitoring_bucket: s3.IBucket,
        data_key: kms.IKey,
        model_key: kms.IKey,
        model_package_group_name: str,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        security_group: ec2.ISecurityGroup,
        serving_image_uri: str | None = None,
        training_set_source: TrainingSetSource | None = None,
        allowed_instance_types: Sequence[str] = (),
        serving_instance_types: Sequence[str] = (),
        monitoring: MonitoringSettings | None = None,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        from_feature_store = settings.source == "feature_store"
        if from_feature_store and training_set_source is None:
            raise ValueError("training.source = 'feature_store' needs training_set_source (the tables to query)")
        region = stack.region
        self.pipeline_name = pipeline_name
        self.code = s3_assets.Asset(self, "TrainingCode", path=str(training_code_bundle()))
        # baseline.py and its thresholds (the environment's monitoring config, so that constraints.json
        # carries the thresholds the environment monitors with).
        self.monitoring_code = monitoring_code_asset(self, "MonitoringCode")
        self.monitoring_config = job_config_asset(self, "MonitoringConfig", monitoring or MonitoringSettings())
        job_network = SageMakerNetworkPolicy(
            self,
            "JobNetworkPolicy",
            vpc=vpc,
            subnets=subnets,
            security_group=security_group,
            log_path="/aws/sagemaker/*",
        )
        self.guardrails = SageMakerGuardrails(
            self,
            "Guardrails",
            volume_keys=[data_key, model_key],
            output_keys=[data_key, model_key],
            unisolated_processing_security_groups=(
                [training_set_source.security_group] if from_feature_store and training_set_source else []
            ),
            instance_types=allowed_instance_types,
        )

        def job_role(id_: str, description: str, network: iam.IManagedPolicy = job_network) -> ServiceRole:
            role = ServiceRole(self, id_, assumed_by=SAGEMAKER, description=description, managed_policies=[network])
            self.guardrails.attach_to(role.role)
            role.read_object(self.code.bucket, self.code.s3_object_key)
            return role

        self.processing_role = job_role("ProcessingRole", "SageMaker processing jobs of the training pipeline")
        self.processing_role.read_objects(raw_bucket, "", reason=RAW_DATA_REASON)
        self.processing_role.read_objects(processed_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)
        self.processing_role.write_objects(processed_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)
        self.processing_role.read_objects(model_artifacts_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)

        self.training_role = job_role("TrainingRole", "SageMaker training and tuning jobs of the training pipeline")
        self.training_role.read_objects(processed_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)
        self.training_role.write_objects(model_artifacts_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)
        self.training_role.read_objects(model_artifacts_bucket, CHECKPOINT_PREFIX, reason=PREFIX_REASON)
        self.training_role.write_objects(model_artifacts_bucket, CHECKPOINT_PREFIX, reason=PREFIX_REASON)

        self.baseline_role = job_role("BaselineRole", "Monitoring baselines job of the training pipeline")
        for asset in (self.monitoring_code, self.monitoring_config):
            self.baseline_role.read_object(asset.bucket, asset.s3_object_key)
        self.baseline_role.read_objects(processed_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)
        self.baseline_role.read_objects(model_artifacts_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)
        self.baseline_role.write_objects(monitoring_bucket, BASELINE_PREFIX, reason=PREFIX_REASON)

        self.training_set_role: ServiceRole | None = None
        training_set: TrainingSetInputs | None = None
        if from_feature_store and training_set_source is not None:
            query_network = SageMakerNetworkPolicy(
                self,
                "QueryJobNetworkPolicy",
                vpc=vpc,
                subnets=subnets,
                security_group=training_set_source.security_group,
                log_path="/aws/sagemaker/*",
            )
            self.training_set_role = job_role(
                "TrainingSetRole",
                "SageMaker processing job that builds training sets from the feature store",
                network=query_network,
            )
            allow_training_set_queries(self.training_set_role, training_set_source)
            self.training_set_role.write_objects(processed_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)
            training_set = TrainingSetInputs(
                role_arn=self.training_set_role.role_arn,
                security_group_ids=[training_set_source.security_group.security_group_id],
                workgroup=training_set_source.workgroup_name,
                database=training_set_source.database_name,
                feature_table=training_set_source.feature_table_name,
                labels_table=training_set_source.labels_table_name,
                labels_root_uri=training_set_source.labels_root_uri,
                default_labels_uri=training_set_source.default_labels_uri,
            )

        self.pipeline_role = ServiceRole(
            self, "PipelineRole", assumed_by=SAGEMAKER, description="SageMaker Pipelines: runs the training pipeline"
        )
        self.guardrails.attach_to(self.pipeline_role.role)
        self._allow_pipeline_to_run_jobs(stack, model_package_group_name)
        # The pipeline reads evaluation.json (property file) and checks the model it registers.
        self.pipeline_role.read_objects(processed_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)
        self.pipeline_role.read_objects(model_artifacts_bucket, PIPELINE_PREFIX, reason=PREFIX_REASON)

        def uri(bucket: s3.IBucket, prefix: str) -> str:
            return f"s3://{bucket.bucket_name}/{prefix}"

        inputs = PipelineInputs(
            region=region,
            settings=settings,
            training_image=xgboost_image(region, "training"),
            serving_image=serving_image_uri or xgboost_image(region, "inference"),
            code_uri=self.code.s3_object_url,
            code_file=self.code.s3_object_key,
            monitoring_code_uri=self.monitoring_code.s3_object_url,
            monitoring_config_uri=self.monitoring_config.s3_object_url,
            monitoring_config_file=self.monitoring_config.s3_object_key,
            raw_data_uri=uri(raw_bucket, "churn/"),
            processed_uri=uri(processed_bucket, PIPELINE_PREFIX + pipeline_name).rstrip("/"),
            model_artifacts_uri=uri(model_artifacts_bucket, PIPELINE_PREFIX + pipeline_name).rstrip("/"),
            checkpoints_uri=uri(model_artifacts_bucket, CHECKPOINT_PREFIX + pipeline_name).rstrip("/"),
            baselines_uri=uri(monitoring_bucket, BASELINE_PREFIX + pipeline_name).rstrip("/"),
            processing_role_arn=self.processing_role.role_arn,
            training_role_arn=self.training_role.role_arn,
            baseline_role_arn=self.baseline_role.role_arn,
            data_key_arn=data_key.key_arn,
            model_key_arn=model_key.key_arn,
            subnet_ids=list(subnets.subnet_ids),
            security_group_ids=[security_group.security_group_id],
            model_package_group_name=model_package_group_name,
            training_set=training_set,
            allowed_instance_types=tuple(allowed_instance_types),
            serving_instance_types=tuple(serving_instance_types),
        )
        self.definition = with_job_tags(self, build_definition(inputs))
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=pipeline_name,
            pipeline_display_name=pipeline_name,
            pipeline_description=(
                "Churn model: "
                + ("build the training set, " if from_feature_store else "")
                + "preprocess, train or tune, evaluate, AUC gate, baseline, register"
            ),
            role_arn=self.pipeline_role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": stack.to_json_string(self.definition)},
            # A plain mapping: the L1 property class renders this key in camelCase, which CloudFormation rejects.
            parallelism_configuration={"MaxParallelExecutionSteps": 4},
        )
        # The pipeline may start only once its role's permissions exist.
        self.pipeline.node.add_dependency(self.pipeline_role.policy)
        if from_feature_store:
            acknowledge(
                self.pipeline,
                "MlPlatform-JobNetworkIsolation",
                f"{BUILD_TRAINING_SET} calls Athena, which a network-isolated job cannot reach; it runs in the "
                "isolated subnets in the query jobs' security group (HTTPS to the VPC endpoints and S3 only), the "
                "guardrails deny an unisolated job in any other group, and its role may query one workgroup and "
                "read the offline store and the labels only. Every other job of the pipeline is isolated.",
            )
        self.pipeline_arn = stack.format_arn(service="sagemaker", resource="pipeline", resource_name=pipeline_name)

    def _allow_pipeline_to_run_jobs(self, stack: Stack, model_package_group_name: str) -> None:
        def arn(resource: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name="*")

        role = self.pipeline_role
        role.allow(
            [
                "sagemaker:CreateProcessingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:CreateHyperParameterTuningJob",
                "sagemaker:DescribeHyperParameterTuningJob",
                "sagemaker:StopHyperParameterTuningJob",
                "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                "sagemaker:AddTags",
            ],
            [arn("processing-job"), arn("training-job"), arn("hyper-parameter-tuning-job")],
            wildcard_reason="Pipeline executions name their jobs at run time; the statement covers processing, "
            "training and tuning jobs of this account and region only, and the guardrails deny unsafe ones.",
        )
        group_arn, versions_arn = registry_arns(self, model_package_group_name)
        role.allow(
            REGISTER_ACTIONS,
            [group_arn, versions_arn],
            wildcard_reason="Every registration creates a new model version ARN (<group>/<version>); "
            "the statement covers versions of this environment's group only.",
        )
        job_roles = [self.processing_role, self.training_role, self.baseline_role]
        if self.training_set_role is not None:
            job_roles.append(self.training_set_role)
        role.allow(
            ["iam:PassRole"],
            [job.role_arn for job in job_roles],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )

    def grant_start(self, grantee: iam.IGrantable) -> iam.Grant:
        """Start executions of this pipeline (schedules, event rules, operators)."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:StartPipelineExecution"], resource_arns=[self.pipeline_arn]
        )
