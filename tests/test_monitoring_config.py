"""Monitoring thresholds: documented defaults, strict parsing, and protected attributes in the schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import feature_schema
from feature_schema import SchemaError, load_schema
from monitor import main as monitor_main
from monitor import protected_attributes
from monitor_config import MonitorConfig, load_config, parse_config
from monitoring_env import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent


def test_contract_documents_exactly_the_default_config() -> None:
    text = (ROOT / "monitoring_code" / "CONTRACT.md").read_text()
    block = re.search(
        r"<!-- default-config:start -->\n```json\n(.*?)\n```\n<!-- default-config:end -->", text, re.DOTALL
    )
    assert block, "CONTRACT.md lost its default-config block"
    assert json.loads(block[1]) == MonitorConfig().to_json()


def test_print_default_config_is_the_dataclass(capsys) -> None:
    monitor_main(["--print-default-config"])
    assert json.loads(capsys.readouterr().out) == MonitorConfig().to_json()


def test_the_default_config_round_trips_and_partial_settings_merge() -> None:
    assert parse_config(MonitorConfig().to_json()) == MonitorConfig()
    config = parse_config(
        {"drift_threshold": 0.2, "model_quality": {"max_drop": {"auc": 0.02}}, "bias": {"protected": []}}
    )
    assert config.drift_threshold == 0.2
    assert config.model_quality.max_drop == {"auc": 0.02, "accuracy": 0.05, "precision": 0.1, "recall": 0.1, "f1": 0.1}
    assert config.bias.protected == ()
    assert config.min_records == MonitorConfig().min_records


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"min_record": 10}, "unknown key min_record; allowed: attribution, bias, categorical_drift_threshold"),
        ({"bias": {"max_di": 1.2}}, "unknown key bias.max_di; allowed: alpha, max_di_ratio"),
        ({"drift_threshold": "0.1"}, 'drift_threshold = "0.1": must be a number'),
        ({"drift_threshold": 0}, "drift_threshold = 0: must be in (0, 1]"),
        ({"min_records": 10.5}, "min_records = 10.5: must be a whole number"),
        ({"min_records": True}, "min_records = true: must be a whole number"),
        ({"drift_alpha": 0.9}, "drift_alpha = 0.9: is a significance level"),
        (
            {"retrain_on": ["data_drift", "data_integrity"]},
            "cannot hold data_integrity: broken input data is fixed upstream",
        ),
        (
            {"retrain_on": ["drift"]},
            "unknown category 'drift'; use data_drift, model_quality, bias_drift, attribution_drift",
        ),
        ({"challenger": {"method": "t-test"}}, 'challenger.method = "t-test": use "bootstrap" or "delong"'),
        ({"model_quality": {"max_drop": {"roc": 0.1}}}, "unknown key model_quality.max_drop.roc"),
        ({"bias": {"max_di_ratio": 0.8}}, "bias.max_di_ratio = 0.8: must be above 1"),
        ({"prediction_threshold": 1}, "prediction_threshold = 1: is the score at or above which"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_a_bad_setting_is_named_with_its_value_and_the_rule(data, message) -> None:
    with pytest.raises(ConfigurationError) as error:
        parse_config(data)
    assert message in str(error.value)


def test_a_config_file_that_is_not_json_names_the_line(tmp_path) -> None:
    path = tmp_path / "monitoring.json"
    path.write_text('{\n  "drift_threshold": 0.1,\n}')
    with pytest.raises(ConfigurationError, match=r"monitoring.json: not valid JSON at line 3 column 1"):
        load_config(path)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_config(tmp_path / "absent.json")


def test_the_schema_declares_protected_attributes() -> None:
    schema = load_schema()
    assert schema.protected_attributes == ("is_senior",)
    assert protected_attributes(schema, MonitorConfig()) == [("is_senior", (0, 1))]


def test_a_protected_attribute_needs_allowed_values(tmp_path, monkeypatch) -> None:
    data = json.loads(feature_schema.SCHEMA_PATH.read_text())
    data["features"][0]["protected"] = True  # a numeric feature without allowed values
    path = tmp_path / "feature_schema.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=r"protected attribute needs used_by_model: true and its segments"):
        load_schema(path)


def test_bias_protected_must_name_a_feature_with_segments() -> None:
    schema = load_schema()
    with pytest.raises(ConfigurationError, match=r"bias\.protected names 'age', which is not a model feature"):
        protected_attributes(schema, parse_config({"bias": {"protected": ["age"]}}))
    numeric = schema.model_features[0]
    with pytest.raises(ConfigurationError, match="which has no allowed values in the feature schema"):
        protected_attributes(schema, parse_config({"bias": {"protected": [numeric]}}))
