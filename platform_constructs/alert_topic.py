"""The one place a person is told that something needs them: an encrypted SNS topic with subscribers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


class AlertTopic(Construct):
    """An SNS topic encrypted with the operations key, TLS only, with the environment's subscribers.

    Every alarm of the platform notifies it (``topic``), and so do EventBridge rules made with
    :meth:`alert_on_event` (failed pipeline executions, for example). E-mail subscribers confirm once
    from the message SNS sends them; HTTPS endpoints confirm through the URL SNS posts to them.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        key: kms.IKey,
        emails: Sequence[str] = (),
        https_endpoints: Sequence[str] = (),
        display_name: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        account = Stack.of(self).account
        self.topic = sns.Topic(self, "Topic", master_key=key, enforce_ssl=True, display_name=display_name)
        for index, address in enumerate(emails):
            sns.Subscription(
                self, f"Email{index}", topic=self.topic, protocol=sns.SubscriptionProtocol.EMAIL, endpoint=address
            )
        for index, url in enumerate(https_endpoints):
            sns.Subscription(
                self, f"Https{index}", topic=self.topic, protocol=sns.SubscriptionProtocol.HTTPS, endpoint=url
            )
        # EventBridge rules of this account may publish (CloudWatch alarms of the account need no grant).
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeRulesOfThisAccount",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": account}},
            )
        )

    @property
    def topic_arn(self) -> str:
        return self.topic.topic_arn

    def alert_on_event(
        self,
        scope: Construct,
        id_: str,
        *,
        description: str,
        event_pattern: Mapping[str, Any],
        message: str,
        message_paths: Mapping[str, str],
    ) -> events.CfnRule:
        """An EventBridge rule in ``scope`` that sends ``message`` to the topic for every matching event.

        ``message`` may name ``<placeholders>`` that ``message_paths`` maps to JSON paths of the event
        (EventBridge's input transformer), so the alert says which pipeline, job or model it is about.
        """
        return events.CfnRule(
            scope,
            id_,
            description=description,
            state="ENABLED",
            event_pattern=dict(event_pattern),
            targets=[
                events.CfnRule.TargetProperty(
                    id="AlertTopic",
                    arn=self.topic.topic_arn,
                    input_transformer=events.CfnRule.InputTransformerProperty(
                        input_paths_map=dict(message_paths), input_template=f'"{message}"'
                    ),
                    retry_policy=events.CfnRule.RetryPolicyProperty(
                        maximum_event_age_in_seconds=3600, maximum_retry_attempts=10
                    ),
                )
            ],
        )
