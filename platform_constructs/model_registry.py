"""The SageMaker Model Registry group that training registers into and serving deploys from."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct


class ModelRegistry(Construct):
    """A Model Package Group, kept on stack deletion: it is the history of every model version."""

    def __init__(self, scope: Construct, id_: str, *, group_name: str, description: str) -> None:
        super().__init__(scope, id_)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=group_name,
            model_package_group_description=description,
        )
        self.group.apply_removal_policy(RemovalPolicy.RETAIN)
        self.group_name = group_name
        self.group_arn = self.group.attr_model_package_group_arn

    def allow_reading(self, *, account: str, principal_arn: str) -> None:
        """Let one role of another account describe and list this group's versions (the receiving
        environment's model intake). The account is the principal and the role a condition, so the policy
        is valid before that role exists."""
        group_arn, versions_arn = registry_arns(self, self.group_name)
        partition = Stack.of(self).partition
        self.group.model_package_group_policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ModelIntake",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
                    "Action": list(READ_ACTIONS),
                    "Resource": [group_arn, versions_arn],
                    "Condition": {"ArnEquals": {"aws:PrincipalArn": principal_arn}},
                }
            ],
        }


# What a pipeline needs to register versions, and a deployer to read them.
REGISTER_ACTIONS = (
    "sagemaker:CreateModelPackage",
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:ListModelPackages",
)
READ_ACTIONS = ("sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup", "sagemaker:ListModelPackages")


def registry_arns(scope: Construct, group_name: str) -> tuple[str, str]:
    """(group ARN, ARN pattern of its model versions) as literals in ``scope``'s stack."""
    stack = Stack.of(scope)
    group = stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=group_name)
    versions = stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{group_name}/*")
    return group, versions
