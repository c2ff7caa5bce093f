"""An AWS Budgets cost budget for the environment's account, notifying the alarm topic."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

# (notification type, percent of the limit): actual spend and AWS's month-end forecast, each at 80 % and 100 %.
THRESHOLDS = (("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 80), ("FORECASTED", 100))


class MonthlyBudget(Construct):
    """A monthly COST budget of ``limit_usd`` with actual and forecast notifications to ``topic``.

    An environment has its own account (the design), so the budget covers the whole account: no
    cost-allocation tag has to be activated first for it to see the spend. AWS Budgets publishes to the
    topic as ``budgets.amazonaws.com``: the topic policy (here) and the topic's KMS key policy
    (``EncryptionKey.allow_budget_notifications``) let it, for this account's budgets only (AWS Cost
    Management guide, "Creating an Amazon SNS topic for budget notifications").
    """

    def __init__(self, scope: Construct, id_: str, *, budget_name: str, limit_usd: float, topic: sns.Topic) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BudgetsOfThisAccount",
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:budgets::{stack.account}:*"},
                },
            )
        )
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=budget_name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=limit_usd, unit="USD"),
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=kind,
                        comparison_operator="GREATER_THAN",
                        threshold=percent,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=[
                        budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=topic.topic_arn)
                    ],
                )
                for kind, percent in THRESHOLDS
            ],
        )
        # Created after the topic policy that lets it publish (the Ref orders it after the topic itself).
        policy = topic.node.try_find_child("Policy")
        if policy is not None:
            self.budget.node.add_dependency(policy)
