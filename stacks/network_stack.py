"""The network of one environment: an isolated VPC with endpoints, flow logs and security groups."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.isolated_network import IsolatedNetwork
from platform_constructs.retention import log_retention


class NetworkStack(Stack):
    """Private isolated subnets in the configured zones; no NAT, no internet gateway."""

    def __init__(
        self, scope: Construct, id_: str, *, env_config: EnvironmentConfig, logs_key: kms.IKey, **kwargs: Any
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        settings = env_config.network
        self.network = IsolatedNetwork(
            self,
            "Network",
            cidr=settings.vpc_cidr,
            availability_zones=env_config.availability_zones,
            subnet_prefix_length=settings.subnet_prefix_length,
            interface_endpoints=settings.interface_endpoints,
            flow_log_key=logs_key,
            flow_log_retention=log_retention(settings.flow_log_retention_days),
            retain=env_config.retain_data,
        )
        CfnOutput(self, "VpcId", value=self.network.vpc.vpc_id)
