"""Security properties of the network stack, per environment, on the synthesized templates."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from config import PlatformConfig
from tests.conftest import Synthesized, resources_of_type

ENVS = ("dev", "staging", "prod")


@pytest.mark.parametrize("env", ENVS)
def test_vpc_spans_the_configured_zones_with_isolated_subnets_only(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    template = synthesized.template(env, "Network")
    Template.from_json(template).has_resource_properties(
        "AWS::EC2::VPC",
        {"CidrBlock": settings.network.vpc_cidr, "EnableDnsHostnames": True, "EnableDnsSupport": True},
    )
    subnets = resources_of_type(template, "AWS::EC2::Subnet").values()
    assert sorted(s["Properties"]["AvailabilityZone"] for s in subnets) == sorted(settings.availability_zones)
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)
    for forbidden in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EIP", "AWS::EC2::Route"):
        assert not resources_of_type(template, forbidden), f"{env} has a {forbidden}"


@pytest.mark.parametrize("env", ENVS)
def test_flow_logs_go_to_an_encrypted_log_group_with_retention(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    template = Template.from_json(synthesized.template(env, "Network"))
    template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )
    template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "KmsKeyId": Match.any_value(),
            "RetentionInDays": platform_config.environment(env).network.flow_log_retention_days,
        },
    )
    # The flow-log role can be assumed only by flow logs of this account.
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                            "Condition": Match.object_like(
                                {"StringEquals": {"aws:SourceAccount": platform_config.environment(env).account}}
                            ),
                        }
                    )
                ]
            }
        },
    )


@pytest.mark.parametrize("env", ENVS)
def test_default_security_group_is_closed(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Network")
    assert len(resources_of_type(template, "Custom::VpcRestrictDefaultSG")) == 1


@pytest.mark.parametrize("env", ENVS)
def test_security_groups_are_described_and_never_open_to_the_world(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Network")
    groups = resources_of_type(template, "AWS::EC2::SecurityGroup")
    assert len(groups) == 5  # VPC endpoints, jobs, inference, functions, query jobs
    assert all(len(g["Properties"]["GroupDescription"]) > 20 for g in groups.values())
    ingress_rules = [r["Properties"] for r in resources_of_type(template, "AWS::EC2::SecurityGroupIngress").values()]
    for group in groups.values():
        ingress_rules += group["Properties"].get("SecurityGroupIngress", [])
    assert ingress_rules, "expected ingress rules between the platform's own security groups"
    for rule in ingress_rules:
        assert rule.get("CidrIp") != "0.0.0.0/0"
        assert rule.get("CidrIpv6") != "::/0"
        assert "SourceSecurityGroupId" in rule, f"ingress from something other than a security group: {rule}"
    # Egress to the world is HTTPS only (the S3 gateway endpoint); there is no route to the internet.
    for group in groups.values():
        for rule in group["Properties"].get("SecurityGroupEgress", []):
            if rule.get("CidrIp") == "0.0.0.0/0":
                assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)


@pytest.mark.parametrize("env", ENVS)
def test_query_jobs_reach_the_endpoints_and_s3_and_nothing_else(synthesized: Synthesized, env: str) -> None:
    """The one group an unisolated job may use (the training-set query): not even other jobs' instances."""
    template = synthesized.template(env, "Network")
    (name,) = [k for k in resources_of_type(template, "AWS::EC2::SecurityGroup") if k.startswith("NetworkQueryJob")]
    group = template["Resources"][name]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert not [
        r
        for r in resources_of_type(template, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [name, "GroupId"]}
    ]
    egress = [(r["IpProtocol"], r["FromPort"], r.get("CidrIp") or "endpoints") for r in group["SecurityGroupEgress"]]
    egress += [
        (r["Properties"]["IpProtocol"], r["Properties"]["FromPort"], "endpoints")
        for r in resources_of_type(template, "AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [name, "GroupId"]}
    ]
    assert sorted(egress) == [("tcp", 443, "0.0.0.0/0"), ("tcp", 443, "endpoints")]


@pytest.mark.parametrize("env", ENVS)
def test_interface_endpoints_are_private_restricted_and_complete(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    template = synthesized.template(env, "Network")
    endpoints = resources_of_type(template, "AWS::EC2::VPCEndpoint").values()
    interface = [e["Properties"] for e in endpoints if e["Properties"]["VpcEndpointType"] == "Interface"]
    names = sorted(p["ServiceName"].removeprefix(f"com.amazonaws.{settings.region}.") for p in interface)
    assert names == sorted(settings.network.interface_endpoints)
    for props in interface:
        assert props["PrivateDnsEnabled"] is True
        assert props["SecurityGroupIds"]
        if props["ServiceName"].endswith(("featurestore-runtime", "sagemaker.metrics")):
            assert "PolicyDocument" not in props  # no documented endpoint-policy support
        else:
            statement = props["PolicyDocument"]["Statement"]
            assert statement == [
                {
                    "Sid": "OnlyPrincipalsOfThisAccount",
                    "Action": "*",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:PrincipalAccount": settings.account}},
                }
            ]


@pytest.mark.parametrize("env", ENVS)
def test_s3_gateway_endpoint_admits_only_buckets_of_this_account_and_ecr_layers(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    template = synthesized.template(env, "Network")
    (gateway,) = [
        e["Properties"]
        for e in resources_of_type(template, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"]["VpcEndpointType"] == "Gateway"
    ]
    statements = {s["Sid"]: s for s in gateway["PolicyDocument"]["Statement"]}
    assert statements["OnlyBucketsOfThisAccount"]["Condition"] == {
        "StringEquals": {"aws:PrincipalAccount": settings.account, "s3:ResourceAccount": settings.account}
    }
    assert statements["EcrImageLayers"]["Action"] == "s3:GetObject"
    assert f"prod-{settings.region}-starport-layer-bucket" in str(statements["EcrImageLayers"]["Resource"])
    assert len(gateway["RouteTableIds"]) == len(settings.availability_zones)
