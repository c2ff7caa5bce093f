"""A Lambda function of the platform, hosted the way every compliance pack asks.

The handlers live in ``functions/`` (one module each, standard library and boto3 only, tested with
moto or botocore's Stubber); the whole folder is the code asset, and ``handler`` names the module
and function (``model_deployer.handler``).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from platform_constructs.execution_role import ServiceRole
from platform_constructs.retention import log_retention
from policy.acknowledge import ignore_cfn_lint

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"
RUNTIME = lambda_.Runtime.PYTHON_3_14


class PlatformFunction(Construct):
    """A Python function in the isolated subnets, with its own role, log group and dead-letter queue.

    - code: ``functions/`` (caches excluded), runtime Python 3.14 on arm64;
    - network: the platform's isolated subnets and the functions' security group, so AWS APIs are
      reached through the VPC endpoints only (the function needs one for each service it calls);
    - logs: a log group encrypted with ``key``, kept ``log_retention_days`` (and on stack deletion
      where ``retain``);
    - failures: asynchronous invocations that fail after Lambda's retries land in an encrypted SQS
      dead-letter queue (kept 14 days); reserved concurrency caps how many run at once (one by
      default: the platform's functions change state and must not race themselves);
    - permissions: a :class:`ServiceRole` (one customer-managed policy); grant through ``role``;
    - alarms: a failed invocation, and an event in the dead-letter queue, notify ``alarm_topic``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        handler: str,
        description: str,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        security_group: ec2.ISecurityGroup,
        key: kms.IKey,
        alarm_topic: sns.ITopic,
        log_retention_days: int,
        retain: bool,
        environment: Mapping[str, str] | None = None,
        timeout_seconds: int = 60,
        memory_mb: int = 256,
        reserved_concurrency: int = 1,
        code_dir: Path = FUNCTIONS_DIR,
        role_name: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
        self.log_group = logs.LogGroup(
            self, "Logs", encryption_key=key, retention=log_retention(log_retention_days), removal_policy=removal
        )
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=removal,
        )
        self.role = ServiceRole(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Lambda: {description}",
            role_name=role_name,
        )
        self._allow_hosting(stack, key, subnets.subnet_ids, security_group.security_group_id)

        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=lambda_.Code.from_asset(str(code_dir), exclude=["__pycache__", "*.pyc", "*.md"]),
            # The role's permissions live in its managed policy; CDK's own additions would be inline.
            role=self.role.role.without_policy_updates(),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets.subnets),
            security_groups=[security_group],
            log_group=self.log_group,
            dead_letter_queue=self.dead_letter_queue,
            reserved_concurrent_executions=reserved_concurrency,
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_mb,
            environment=dict(environment or {}),
            environment_encryption=key if environment else None,
            retry_attempts=2,
        )
        # Lambda checks the role's network permissions when it creates the function.
        self.function.node.add_dependency(self.role.policy)
        self.alarms = self._alarms(alarm_topic, description)
        ignore_cfn_lint(
            typing.cast(CfnResource, self.function.node.default_child),
            "W3005",
            "CDK's Function declares DependsOn on its role as well as a GetAtt of it; redundant but harmless.",
        )

    @property
    def function_arn(self) -> str:
        return self.function.function_arn

    def _allow_hosting(self, stack: Stack, key: kms.IKey, subnet_ids: Sequence[str], security_group_id: str) -> None:
        role = self.role
        role.allow(["logs:CreateLogStream", "logs:PutLogEvents"], [self.log_group.log_group_arn])
        role.allow(["sqs:SendMessage"], [self.dead_letter_queue.queue_arn])
        role.use_key(key, encrypt=True, decrypt=True)

        # Lambda creates and removes the function's network interfaces with the function's role (the
        # permissions of AWS's AWSLambdaVPCAccessExecutionRole, scoped here). Lambda's VPC guide:
        # DescribeNetworkInterfaces "only works if it's allowed on all resources"; for
        # DeleteNetworkInterface "either specify a unique resource ID, or include all resource IDs".
        def ec2_arn(resource: str, name: str) -> str:
            return stack.format_arn(service="ec2", resource=resource, resource_name=name)

        interfaces = ec2_arn("network-interface", "*")
        role.allow(
            ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
            ["*"],
            wildcard_reason="EC2 Describe calls support no resource-level permissions (Lambda's VPC guide: "
            "DescribeNetworkInterfaces works only when allowed on all resources).",
        )
        role.allow(
            ["ec2:CreateNetworkInterface"],
            [*(ec2_arn("subnet", s) for s in subnet_ids), ec2_arn("security-group", security_group_id), interfaces],
            wildcard_reason="Lambda creates the function's network interfaces at run time, so their IDs are "
            "unknown; creation is limited to the platform's subnets and the functions' security group.",
        )
        role.allow(
            ["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
            [interfaces],
            wildcard_reason="Lambda creates the function's network interfaces at run time, so their IDs are "
            "unknown; creation is limited to the platform's subnets and the functions' security group.",
        )

    def _alarms(self, topic: sns.ITopic, description: str) -> list[cloudwatch.Alarm]:
        """A person hears of every failed invocation and of every event that gave up in the queue."""
        errors = cloudwatch.Alarm(
            self,
            "ErrorsAlarm",
            alarm_description=f"{description}: an invocation failed (see the function's log group)",
            metric=self.function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        dead_letters = cloudwatch.Alarm(
            self,
            "DeadLettersAlarm",
            alarm_description=f"{description}: an event failed after every retry and waits in the dead-letter queue",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(topic)
        for alarm in (errors, dead_letters):
            alarm.add_alarm_action(action)
        return [errors, dead_letters]

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        return self.function.grant_invoke(grantee)

    def allow(
        self,
        actions: Sequence[str],
        resources: Sequence[str],
        conditions: dict[str, object] | None = None,
        *,
        wildcard_reason: str | None = None,
    ) -> None:
        """Add one statement to the function's role (see :meth:`ServiceRole.allow`)."""
        self.role.allow(actions, resources, conditions, wildcard_reason=wildcard_reason)
