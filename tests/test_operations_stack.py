"""The alarm topic: encrypted, TLS only, with the subscribers config names, reachable by EventBridge."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from config import ConfigError, PlatformConfig, parse_config
from config.settings import DEFAULT_CONFIG_PATH
from tests.conftest import Synthesized, resources_of_type

pytestmark = pytest.mark.slow
ENVS = ["dev", "staging", "prod"]


@pytest.mark.parametrize("env", ENVS)
def test_alarm_topic_has_the_configured_subscribers_from_the_first_deploy(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env).operations
    template = synthesized.template(env, "Operations")
    (topic_id, topic), *others = resources_of_type(template, "AWS::SNS::Topic").items()
    assert others == []
    assert "KmsMasterKeyId" in topic["Properties"]
    subscriptions = sorted(
        (s["Properties"]["Protocol"], s["Properties"]["Endpoint"])
        for s in resources_of_type(template, "AWS::SNS::Subscription").values()
        if s["Properties"]["TopicArn"] == {"Ref": topic_id}
    )
    expected = sorted(
        [("email", a) for a in settings.alert_emails] + [("https", u) for u in settings.alert_https_endpoints]
    )
    assert subscriptions == expected
    assert subscriptions  # every environment tells somebody


@pytest.mark.parametrize("env", ENVS)
def test_only_tls_and_this_accounts_event_rules_reach_the_topic(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    template = synthesized.template(env, "Operations")
    (policy,) = resources_of_type(template, "AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (deny_plain,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny_plain["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (events,) = [s for s in statements if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert events["Action"] == "sns:Publish"
    assert events["Condition"] == {"StringEquals": {"aws:SourceAccount": platform_config.environment(env).account}}
    data = synthesized.template(env, "Data")
    key_statements = [
        s
        for key in resources_of_type(data, "AWS::KMS::Key").values()
        for s in key["Properties"]["KeyPolicy"]["Statement"]
    ]
    assert any(s.get("Principal") == {"Service": "events.amazonaws.com"} for s in key_statements)


def _raw() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"alert_emails": []}, "alert_emails", "name at least one subscriber"),
        ({"alert_emails": ["not-an-address"]}, "alert_emails[0]", "not an e-mail address"),
        ({"alert_emails": ["a@example.com", "a@example.com"]}, "alert_emails", "lists a subscriber twice"),
        ({"alert_https_endpoints": ["http://hooks.example.com/x"]}, "alert_https_endpoints[0]", "https://"),
        ({"log_retention_days": 10}, "log_retention_days", "CloudWatch Logs accepts only"),
    ],
)
def test_bad_operations_settings_are_refused_naming_the_field(
    settings: dict[str, Any], field: str, message: str
) -> None:
    raw = copy.deepcopy(_raw())
    prod = next(e for e in raw["environments"] if e["name"] == "prod")
    prod["operations"] = {**prod["operations"], **settings}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.field_path == f"environments[2].operations.{field}"
    assert message in str(caught.value)
