"""The SageMaker Model Registry group that training registers into and serving deploys from."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
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

    @property
    def model_packages_arn(self) -> str:
        """ARN pattern of every model version in the group."""
        return Stack.of(self).format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{self.group_name}/*"
        )

    def grant_register(self, grantee: iam.IGrantable) -> iam.Grant:
        """Register new model versions (pending approval) with their metrics."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=[
                "sagemaker:CreateModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:ListModelPackages",
            ],
            resource_arns=[self.group_arn, self.model_packages_arn],
        )

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read model versions, their approval status and metrics."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=[
                "sagemaker:DescribeModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:ListModelPackages",
            ],
            resource_arns=[self.group_arn, self.model_packages_arn],
        )
