"""Operations of one environment: who is told when something needs a person."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.alert_topic import AlertTopic
from stacks.data_stack import DataStack


class OperationsStack(Stack):
    """The alarm topic every alarm and alerting rule of the environment notifies, with the subscribers
    named in config (``[environments.operations]``), encrypted with the environment's logs key."""

    def __init__(
        self, scope: Construct, id_: str, *, env_config: EnvironmentConfig, data: DataStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        settings = env_config.operations
        self.alerts = AlertTopic(
            self,
            "Alerts",
            key=data.logs_key,
            emails=settings.alert_emails,
            https_endpoints=settings.alert_https_endpoints,
            display_name=f"ML platform {env_config.name} alerts",
        )
        self.add_stack_dependency(data)
        CfnOutput(self, "AlarmTopicArn", value=self.alerts.topic_arn)
