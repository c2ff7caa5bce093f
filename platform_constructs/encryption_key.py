"""A customer-managed KMS key for one data domain of one environment."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class EncryptionKey(kms.Key):
    """A symmetric key with yearly rotation, an alias and the environment's removal policy.

    The key policy is CDK's default (the account administers the key and may delegate use through
    IAM), so every use is granted by an identity policy scoped to this key's ARN with ``grant_*``.
    Service principals that cannot hold IAM policies (CloudWatch Logs) are added one by one with a
    condition that pins them to this account.
    """

    def __init__(self, scope: Construct, id_: str, *, alias: str, description: str, retain: bool) -> None:
        super().__init__(
            scope,
            id_,
            alias=alias,
            description=description,
            enable_key_rotation=True,
            rotation_period=Duration.days(365),
            # A deleted key makes everything it encrypted unreadable: wait the maximum outside dev.
            pending_window=Duration.days(30 if retain else 7),
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )

    def allow_cloudwatch_logs(self) -> None:
        """Let CloudWatch Logs encrypt log groups of this account and region with the key."""
        stack = Stack.of(self)
        self.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

    def allow_alarm_notifications(self) -> None:
        """Let CloudWatch alarms and EventBridge rules of this account publish to SNS topics encrypted
        with the key (both encrypt the message with it when they publish)."""
        stack = Stack.of(self)
        self.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowEventBridgeRulesOfThisAccount",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )

    def allow_budget_notifications(self) -> None:
        """Let AWS Budgets of this account publish to SNS topics encrypted with the key."""
        stack = Stack.of(self)
        self.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowBudgetsOfThisAccount",
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:budgets::{stack.account}:*"},
                },
            )
        )
