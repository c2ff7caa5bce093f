"""A VPC with no route to the internet, in which every SageMaker job and model of the platform runs."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass

import jsii
from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct, IValidation

from policy.acknowledge import ignore_cfn_lint

HTTPS = ec2.Port.tcp(443)


@dataclass(frozen=True)
class _EndpointService:
    construct_id: str
    service: ec2.InterfaceVpcEndpointAwsService
    # False where the service does not document VPC endpoint policies; those endpoints keep the
    # default (full access) policy and rely on IAM alone.
    supports_policy: bool = True


# Keyed by the names used in config (`network.interface_endpoints`).
ENDPOINT_SERVICES: dict[str, _EndpointService] = {
    "sagemaker.api": _EndpointService("SageMakerApiEndpoint", ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API),
    "sagemaker.runtime": _EndpointService(
        "SageMakerRuntimeEndpoint", ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME
    ),
    "sagemaker.featurestore-runtime": _EndpointService(
        "FeatureStoreRuntimeEndpoint",
        ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_FEATURESTORE_RUNTIME,
        supports_policy=False,
    ),
    "sagemaker.metrics": _EndpointService(
        "SageMakerMetricsEndpoint", ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_METRICS, supports_policy=False
    ),
    "sts": _EndpointService("StsEndpoint", ec2.InterfaceVpcEndpointAwsService.STS),
    "ecr.api": _EndpointService("EcrApiEndpoint", ec2.InterfaceVpcEndpointAwsService.ECR),
    "ecr.dkr": _EndpointService("EcrDockerEndpoint", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER),
    "logs": _EndpointService("CloudWatchLogsEndpoint", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
    "monitoring": _EndpointService(
        "CloudWatchMonitoringEndpoint", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING
    ),
    "kms": _EndpointService("KmsEndpoint", ec2.InterfaceVpcEndpointAwsService.KMS),
    "athena": _EndpointService("AthenaEndpoint", ec2.InterfaceVpcEndpointAwsService.ATHENA),
    "glue": _EndpointService("GlueEndpoint", ec2.InterfaceVpcEndpointAwsService.GLUE),
    "ssm": _EndpointService("SsmEndpoint", ec2.InterfaceVpcEndpointAwsService.SSM),
    "cloudformation": _EndpointService("CloudFormationEndpoint", ec2.InterfaceVpcEndpointAwsService.CLOUDFORMATION),
    "sns": _EndpointService("SnsEndpoint", ec2.InterfaceVpcEndpointAwsService.SNS),
}


def _custom_resource_responses(region: str) -> str:
    """The bucket CloudFormation's presigned custom-resource response URLs point at in ``region``."""
    return f"cloudformation-custom-resource-response-{region.replace('-', '')}"


class IsolatedNetwork(Construct):
    """Private isolated subnets in every configured zone, VPC endpoints, flow logs, security groups.

    There is no internet gateway and no NAT gateway: jobs and models reach AWS services only through
    the VPC endpoints, whose policies admit only principals of this account (and, for S3, only
    buckets of this account plus the bucket ECR serves image layers from).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cidr: str,
        availability_zones: Sequence[str],
        subnet_prefix_length: int,
        interface_endpoints: Sequence[str],
        flow_log_key: kms.IKey,
        flow_log_retention: logs.RetentionDays,
        retain: bool,
    ) -> None:
        super().__init__(scope, id_)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            availability_zones=list(availability_zones),
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="Isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=subnet_prefix_length
                )
            ],
            restrict_default_security_group=True,
            enable_dns_hostnames=True,
            enable_dns_support=True,
        )
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.selected_subnets = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        for subnet in self.vpc.isolated_subnets:
            ignore_cfn_lint(
                typing.cast(CfnResource, subnet.node.default_child),
                "W3010",
                "Availability zones come from config on purpose: synth must not look them up.",
            )
        self._add_flow_log(flow_log_key, flow_log_retention, retain)

        self.endpoint_security_group = self._security_group(
            "EndpointSecurityGroup", "VPC interface endpoints: HTTPS from the platform security groups only"
        )
        self.job_security_group = self._security_group(
            "JobSecurityGroup", "SageMaker training, processing and monitoring jobs"
        )
        self.inference_security_group = self._security_group(
            "InferenceSecurityGroup", "SageMaker models behind endpoints and batch transform"
        )
        # Instances of one distributed job talk to each other (XGBoost collective, encrypted).
        self.job_security_group.add_ingress_rule(
            self.job_security_group, ec2.Port.all_tcp(), "Between instances of one distributed job"
        )
        self.job_security_group.add_egress_rule(
            self.job_security_group, ec2.Port.all_tcp(), "Between instances of one distributed job"
        )
        self.function_security_group = self._security_group(
            "FunctionSecurityGroup", "Lambda functions of the platform: HTTPS to AWS APIs through the endpoints"
        )
        # Jobs that must call an AWS API themselves (training-set queries in Athena) cannot be
        # network-isolated; the guardrails let an unisolated job run in this group only, which reaches
        # the endpoints and S3 and nothing else (not even other jobs' instances).
        self.query_job_security_group = self._security_group(
            "QueryJobSecurityGroup", "SageMaker jobs that query AWS APIs (Athena): HTTPS to the endpoints and S3 only"
        )
        for client in (
            self.job_security_group,
            self.inference_security_group,
            self.function_security_group,
            self.query_job_security_group,
        ):
            self.allow_endpoint_access(client)
            # The S3 gateway endpoint is reached through the route table, at S3's public addresses.
            # The isolated subnets have no other route out, so this reaches S3 and nothing else.
            client.add_egress_rule(
                ec2.Peer.any_ipv4(), HTTPS, "HTTPS to S3 through the gateway endpoint (no internet route)"
            )

        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.subnets]
        )
        self._restrict_s3_endpoint()
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        self._required: dict[str, list[str]] = {}
        self.node.add_validation(_RequiredEndpoints(self))
        for name in interface_endpoints:
            spec = ENDPOINT_SERVICES[name]
            endpoint = ec2.InterfaceVpcEndpoint(
                self,
                spec.construct_id,
                vpc=self.vpc,
                service=spec.service,
                subnets=self.subnets,
                security_groups=[self.endpoint_security_group],
                private_dns_enabled=True,
                open=False,
            )
            if spec.supports_policy:
                endpoint.add_to_policy(self._own_account_statement())
            self.interface_endpoints[name] = endpoint

    def require_endpoint(self, service: str, *, used_by: str) -> None:
        """Declare that ``used_by`` calls ``service`` from the isolated subnets: synth fails, naming the
        config field, where the environment trims that interface endpoint away."""
        self._required.setdefault(service, []).append(used_by)

    def allow_endpoint_access(self, client: ec2.ISecurityGroup) -> None:
        """Let ``client`` call AWS APIs through the interface endpoints (HTTPS)."""
        self.endpoint_security_group.add_ingress_rule(client, HTTPS, "HTTPS from a platform security group")
        client.add_egress_rule(self.endpoint_security_group, HTTPS, "HTTPS to the VPC interface endpoints")

    def _security_group(self, id_: str, description: str) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(self, id_, vpc=self.vpc, description=description, allow_all_outbound=False)

    def _own_account_statement(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="OnlyPrincipalsOfThisAccount",
            principals=[iam.AnyPrincipal()],
            actions=["*"],
            resources=["*"],
            conditions={"StringEquals": {"aws:PrincipalAccount": Stack.of(self).account}},
        )

    def _restrict_s3_endpoint(self) -> None:
        stack = Stack.of(self)
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="OnlyBucketsOfThisAccount",
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:PrincipalAccount": stack.account,
                        "s3:ResourceAccount": stack.account,
                    }
                },
            )
        )
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="EcrImageLayers",
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=[f"arn:{stack.partition}:s3:::prod-{stack.region}-starport-layer-bucket/*"],
            )
        )
        # A custom resource's function answers CloudFormation by a PUT to a presigned URL in this
        # AWS-owned bucket of the region (signed by CloudFormation, hence no principal condition).
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="CloudFormationCustomResourceResponses",
                principals=[iam.AnyPrincipal()],
                actions=["s3:PutObject"],
                resources=[f"arn:{stack.partition}:s3:::{_custom_resource_responses(stack.region)}/*"],
            )
        )

    def allow_reading_other_account(self, *, account: str, object_arns: list[str], sid: str) -> None:
        """Let principals of this account read ``object_arns`` of buckets in ``account`` through the S3
        gateway endpoint (which otherwise admits buckets of this account only)."""
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid=sid,
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=object_arns,
                conditions={
                    "StringEquals": {"aws:PrincipalAccount": Stack.of(self).account, "s3:ResourceAccount": account}
                },
            )
        )

    def _add_flow_log(self, key: kms.IKey, retention: logs.RetentionDays, retain: bool) -> None:
        log_group = logs.LogGroup(
            self,
            "FlowLogGroup",
            encryption_key=key,
            retention=retention,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "FlowLogRole",
            assumed_by=iam.ServicePrincipal(
                "vpc-flow-logs.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(service="ec2", resource="vpc-flow-log", resource_name="*")
                    },
                },
            ),
            description="Lets VPC Flow Logs write to the flow-log group of this VPC",
        )
        # A customer-managed policy written out in full, not grants into an inline policy
        # (HIPAA/NIST/PCI IAMNoInlinePolicy); the role is handed over immutable so that the flow
        # log cannot add an inline policy of its own.
        iam.ManagedPolicy(
            self,
            "FlowLogPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[log_group.log_group_arn],
                ),
                iam.PolicyStatement(actions=["iam:PassRole"], resources=[role.role_arn]),
            ],
        )
        self.flow_log = ec2.FlowLog(
            self,
            "FlowLog",
            resource_type=ec2.FlowLogResourceType.from_vpc(self.vpc),
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group, role.without_policy_updates()),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        self.flow_log_group = log_group


@jsii.implements(IValidation)
class _RequiredEndpoints:
    """Every interface endpoint a construct declared it needs exists (config may trim them per environment)."""

    def __init__(self, network: IsolatedNetwork) -> None:
        self._network = network

    def validate(self) -> list[str]:
        return [
            f"network.interface_endpoints lacks {service!r}, which {', '.join(users)} calls from the isolated "
            f"subnets (no internet route); add {service!r} to this environment's [environments.network] "
            "interface_endpoints in config/environments.toml"
            for service, users in sorted(self._network._required.items())
            if service not in self._network.interface_endpoints
        ]
