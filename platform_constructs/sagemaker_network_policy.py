"""IAM permissions SageMaker needs to place jobs and models in the platform VPC and to log."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from policy.acknowledge import acknowledge


class SageMakerNetworkPolicy(iam.ManagedPolicy):
    """What a SageMaker execution role needs to run jobs or models in the VPC and to log: network
    interfaces in the platform's subnets with one security group, CloudWatch Logs under
    ``log_path`` and metrics in the /aws/sagemaker namespaces."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        security_group: ec2.ISecurityGroup,
        log_path: str,
    ) -> None:
        super().__init__(scope, id_, description="SageMaker in the platform VPC: network interfaces and logs")
        stack = Stack.of(self)

        def ec2_arn(resource: str, name: str) -> str:
            return stack.format_arn(service="ec2", resource=resource, resource_name=name)

        self.add_statements(
            iam.PolicyStatement(
                sid="DescribeNetwork",
                actions=[
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],  # EC2 Describe calls support no resource-level permissions
            ),
            iam.PolicyStatement(
                sid="CreateInterfacesInPlatformSubnets",
                actions=["ec2:CreateNetworkInterface"],
                resources=[
                    *(ec2_arn("subnet", subnet_id) for subnet_id in subnets.subnet_ids),
                    ec2_arn("security-group", security_group.security_group_id),
                    ec2_arn("network-interface", "*"),
                ],
            ),
            iam.PolicyStatement(
                sid="ManageInterfacesInPlatformVpc",
                actions=[
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=[ec2_arn("network-interface", "*")],
                conditions={"ArnEquals": {"ec2:Vpc": ec2_arn("vpc", vpc.vpc_id)}},
            ),
            iam.PolicyStatement(
                sid="JobLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name=log_path,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="JobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resources; the namespace condition scopes it
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            ),
        )
        acknowledge(
            self,
            "AwsSolutions-IAM5[Resource::*]",
            "EC2 Describe calls and PutMetricData support no resource-level permissions; metrics are limited "
            "to the /aws/sagemaker namespaces by condition.",
        )
        acknowledge(
            self,
            f"AwsSolutions-IAM5[Resource::{ec2_arn('network-interface', '*')}]",
            "SageMaker creates the job's network interfaces at run time, so their IDs are unknown; creation is "
            "limited to the platform's subnets and security group, changes to interfaces in its VPC.",
        )
        acknowledge(
            self,
            f"AwsSolutions-IAM5[Resource::{stack.format_arn(service='logs', resource='log-group', resource_name=log_path, arn_format=ArnFormat.COLON_RESOURCE_NAME)}]",
            f"SageMaker writes logs to log groups and streams it names under {log_path.rstrip('*')}; "
            "nothing outside that path.",
        )
