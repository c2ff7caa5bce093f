"""Operations of one environment: who is told when something needs a person, what it may spend, and
where SageMaker's job logs go."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from config import EnvironmentConfig
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.cost_budget import MonthlyBudget
from platform_constructs.pipeline_alerts import PipelineAlerts
from platform_constructs.sagemaker_log_groups import SageMakerJobLogGroups
from stacks.data_stack import DataStack


class OperationsStack(Stack):
    """The alarm topic every alarm and alerting rule of the environment notifies, with the subscribers
    named in config (``[environments.operations]``), encrypted with the environment's logs key; the
    rules that alert on failed pipeline executions, steps and monitoring jobs of the environment; the
    monthly budget; and SageMaker's job log groups (where config says this environment owns them)."""

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
        prefix = f"{data.project}-{env_config.name}"
        self.pipeline_alerts = PipelineAlerts(
            self, "PipelineAlerts", alerts=self.alerts, name_prefix=f"{prefix}-", environment=env_config.name
        )
        self.budget = MonthlyBudget(
            self,
            "MonthlyBudget",
            budget_name=f"{prefix}-monthly",
            limit_usd=settings.monthly_budget_usd,
            topic=self.alerts.topic,
        )
        self.job_logs = (
            SageMakerJobLogGroups(
                self,
                "SageMakerJobLogs",
                key=data.logs_key,
                retention_days=settings.log_retention_days,
                retain=env_config.retain_data,
            )
            if settings.sagemaker_job_log_groups
            else None
        )
        self.add_stack_dependency(data)
        CfnOutput(self, "AlarmTopicArn", value=self.alerts.topic_arn)
        CfnOutput(self, "BudgetName", value=f"{prefix}-monthly")
