"""Deny guardrails on SageMaker condition keys, attached to every SageMaker role of the platform.

Allow statements say what a role may do; these Deny statements say how it must do it, whatever a
later Allow grants: every job and model inside the VPC, network-isolated where the job type allows
it, inter-container traffic encrypted, volumes and outputs encrypted with the platform's own keys.
A request that omits a setting is denied as well (``Null`` checks), because an absent key is
neither true nor false in IAM.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from config.sagemaker_api import LOCAL_STORAGE_PATTERNS

_MONITORING_JOB_DEFINITIONS = (
    "sagemaker:CreateDataQualityJobDefinition",
    "sagemaker:CreateModelQualityJobDefinition",
    "sagemaker:CreateModelBiasJobDefinition",
    "sagemaker:CreateModelExplainabilityJobDefinition",
)
_TRAINING = ("sagemaker:CreateTrainingJob", "sagemaker:CreateHyperParameterTuningJob")
_PROCESSING = ("sagemaker:CreateProcessingJob",)

# Which create calls carry which condition key (IAM Service Authorization Reference, SageMaker).
VPC_ACTIONS = (*_TRAINING, *_PROCESSING, "sagemaker:CreateModel", *_MONITORING_JOB_DEFINITIONS)
ENCRYPTED_TRAFFIC_ACTIONS = (*_TRAINING, *_PROCESSING, *_MONITORING_JOB_DEFINITIONS)
VOLUME_KEY_ACTIONS = (
    *_TRAINING,
    *_PROCESSING,
    "sagemaker:CreateTransformJob",
    "sagemaker:CreateEndpointConfig",
    *_MONITORING_JOB_DEFINITIONS,
)
OUTPUT_KEY_ACTIONS = (*_TRAINING, *_PROCESSING, "sagemaker:CreateTransformJob", *_MONITORING_JOB_DEFINITIONS)
SCHEDULE_ACTIONS = ("sagemaker:CreateMonitoringSchedule", "sagemaker:UpdateMonitoringSchedule")
# The create calls that launch instances and carry sagemaker:InstanceTypes.
INSTANCE_JOB_ACTIONS = (*_TRAINING, *_PROCESSING, "sagemaker:CreateTransformJob")
INSTANCE_TYPE_ACTIONS = (*INSTANCE_JOB_ACTIONS, "sagemaker:CreateEndpointConfig")


class SageMakerGuardrails(iam.ManagedPolicy):
    """A customer-managed policy of Deny statements; attach it with :meth:`attach_to`.

    ``volume_keys`` and ``output_keys`` are the only KMS keys jobs may use. Processing jobs must be
    network-isolated unless ``isolate_processing=False`` (a job that calls an AWS API, such as
    Feature Store ingestion, cannot be isolated; it still runs in the VPC and reaches AWS only
    through the VPC endpoints). With ``unisolated_processing_security_groups``, processing jobs stay
    isolated except those that run in exactly those security groups (the training pipeline's
    training-set query, in a group that reaches the VPC endpoints and S3 only).

    A request without a volume key is denied unless every instance type it names has local NVMe
    storage: SageMaker refuses a volume key there ("You can't request a VolumeKmsKeyId when using an
    instance type with local storage"), and the instance's hardware encrypts those volumes.

    ``instance_types`` (the environment's ``compute.allowed_instance_types``; exact types or
    ``ml.<family>.*``) are the only types jobs and endpoint configs may use; a request that names no
    instance type is denied too (``ForAnyValue`` is false when the key is absent), except endpoint
    configs where ``serverless_endpoints`` (serverless variants have no instance type).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        volume_keys: Sequence[kms.IKey],
        output_keys: Sequence[kms.IKey],
        isolate_processing: bool = True,
        unisolated_processing_security_groups: Sequence[ec2.ISecurityGroup] = (),
        instance_types: Sequence[str] = (),
        serverless_endpoints: bool = False,
    ) -> None:
        if not volume_keys or not output_keys:
            raise ValueError("SageMakerGuardrails needs at least one volume key and one output key")
        super().__init__(
            scope,
            id_,
            description="Deny SageMaker jobs and models outside the VPC, unisolated, unencrypted or "
            "encrypted with keys other than the platform's",
        )
        # A managed policy holds at most 6,144 characters: the volume-key and instance-type statements
        # (long lists of actions and instance-type patterns) live in a second policy, attached with this one.
        self.storage_and_instance_types = iam.ManagedPolicy(
            self,
            "StorageAndInstanceTypes",
            description="Deny SageMaker volumes without the platform's keys (except on local NVMe storage) and "
            "instance types outside the environment's allowed list",
        )
        isolated_actions: tuple[str, ...] = (*_TRAINING, "sagemaker:CreateModel", *_MONITORING_JOB_DEFINITIONS)
        exempt_groups = [group.security_group_id for group in unisolated_processing_security_groups]
        if isolate_processing and not exempt_groups:
            isolated_actions += _PROCESSING

        self._deny("DenyJobsOutsideVpcSubnets", VPC_ACTIONS, {"Null": {"sagemaker:VpcSubnets": "true"}})
        self._deny("DenyJobsWithoutSecurityGroups", VPC_ACTIONS, {"Null": {"sagemaker:VpcSecurityGroupIds": "true"}})
        self._deny("DenyNetworkIsolationOff", isolated_actions, {"Bool": {"sagemaker:NetworkIsolation": "false"}})
        self._deny("DenyNetworkIsolationUnset", isolated_actions, {"Null": {"sagemaker:NetworkIsolation": "true"}})
        if isolate_processing and exempt_groups:
            # Unisolated processing only with every security group one of the exempt ones (the
            # multivalued key: deny when any group of the request is another).
            self._deny(
                "DenyUnisolatedProcessingOutsideQueryGroups",
                _PROCESSING,
                {
                    "Bool": {"sagemaker:NetworkIsolation": "false"},
                    "ForAnyValue:StringNotEquals": {"sagemaker:VpcSecurityGroupIds": exempt_groups},
                },
            )
            self._deny(
                "DenyProcessingNetworkIsolationUnset", _PROCESSING, {"Null": {"sagemaker:NetworkIsolation": "true"}}
            )
        self._deny(
            "DenyInterContainerEncryptionOff",
            ENCRYPTED_TRAFFIC_ACTIONS,
            {"Bool": {"sagemaker:InterContainerTrafficEncryption": "false"}},
        )
        self._deny(
            "DenyInterContainerEncryptionUnset",
            ENCRYPTED_TRAFFIC_ACTIONS,
            {"Null": {"sagemaker:InterContainerTrafficEncryption": "true"}},
        )
        self._deny(
            "DenyVolumeKeyUnset",
            VOLUME_KEY_ACTIONS,
            {
                "Null": {"sagemaker:VolumeKmsKey": "true"},
                "ForAnyValue:StringNotLike": {"sagemaker:InstanceTypes": list(LOCAL_STORAGE_PATTERNS)},
            },
        )
        # A negated operator is true when the key is absent (IAM): the Null condition keeps a request
        # without a volume key (local storage, allowed above) out of this statement.
        self._deny(
            "DenyForeignVolumeKey",
            VOLUME_KEY_ACTIONS,
            {
                "ArnNotEquals": {"sagemaker:VolumeKmsKey": [key.key_arn for key in volume_keys]},
                "Null": {"sagemaker:VolumeKmsKey": "false"},
            },
        )
        self._deny("DenyOutputKeyUnset", OUTPUT_KEY_ACTIONS, {"Null": {"sagemaker:OutputKmsKey": "true"}})
        self._deny(
            "DenyForeignOutputKey",
            OUTPUT_KEY_ACTIONS,
            {"ArnNotEquals": {"sagemaker:OutputKmsKey": [key.key_arn for key in output_keys]}},
        )
        # A schedule carries no job settings of its own; force it to point at a job definition,
        # whose settings the statements above guard.
        self._deny(
            "DenySchedulesWithoutJobDefinition",
            SCHEDULE_ACTIONS,
            {"Null": {"sagemaker:ModelMonitorJobDefinitionName": "true"}},
        )
        self.instance_types = tuple(instance_types)
        if self.instance_types:
            self._deny(
                "DenyInstanceTypesNotAllowed",
                INSTANCE_TYPE_ACTIONS,
                {"ForAnyValue:StringNotLike": {"sagemaker:InstanceTypes": list(self.instance_types)}},
            )
            self._deny(
                "DenyInstanceTypesUnset",
                INSTANCE_JOB_ACTIONS if serverless_endpoints else INSTANCE_TYPE_ACTIONS,
                {"Null": {"sagemaker:InstanceTypes": "true"}},
            )

    def _deny(self, sid: str, actions: Sequence[str], conditions: dict[str, object]) -> None:
        second = sid in ("DenyVolumeKeyUnset", "DenyForeignVolumeKey") or sid.startswith("DenyInstanceTypes")
        policy = self.storage_and_instance_types if second else self
        policy.add_statements(
            iam.PolicyStatement(
                sid=sid,
                effect=iam.Effect.DENY,
                actions=list(actions),
                resources=["*"],
                conditions=conditions,
            )
        )

    def attach_to(self, *roles: iam.IRole) -> None:
        for role in roles:
            self.attach_to_role(role)
            self.storage_and_instance_types.attach_to_role(role)
