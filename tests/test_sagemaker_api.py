"""What SageMaker accepts, from botocore's model: instance types per request kind, local storage, and the
config that refuses a request SageMaker would refuse before anything synthesizes."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_config, parse_config
from config.sagemaker_api import (
    EBS_ONLY_FAMILIES,
    INSTANCE_TYPE_SHAPES,
    LOCAL_STORAGE_FAMILIES,
    UNCLASSIFIED_FAMILIES,
    UnknownInstanceStorageError,
    family_of,
    has_local_storage,
    instance_type_choices,
    instance_types,
    name_constraint,
    volume_kms_key_for,
)
from config.settings import DEFAULT_CONFIG_PATH
from platform_constructs.pipeline_definition import instance_type_parameter, volume_key_field


@pytest.fixture
def raw() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


def env(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in raw["environments"] if e["name"] == name)


def error_of(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


def test_every_instance_family_botocore_lists_is_classified_once() -> None:
    families = {family_of(t) for kind in INSTANCE_TYPE_SHAPES for t in instance_types(kind)}
    classified = [*LOCAL_STORAGE_FAMILIES, *EBS_ONLY_FAMILIES, *UNCLASSIFIED_FAMILIES]
    assert len(classified) == len(set(classified)), "a family is in two lists"
    assert families - set(classified) == set(), "classify the new families in config/sagemaker_api.py"
    assert set(classified) - families == set(), "a classified family is not in botocore's lists any more"


@pytest.mark.parametrize(
    ("instance_type", "local"),
    [
        ("ml.m5.xlarge", False),
        ("ml.c5.2xlarge", False),
        ("ml.p3.2xlarge", False),
        ("ml.g4dn.xlarge", True),
        ("ml.g5.2xlarge", True),
        ("ml.g6.xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p5.48xlarge", True),
        ("ml.m5d.large", True),
        ("ml.c5d.xlarge", True),
        ("ml.p6-b200.48xlarge", True),
    ],
)
def test_local_storage_decides_the_volume_key(instance_type: str, local: bool) -> None:
    assert has_local_storage(instance_type) is local
    assert volume_kms_key_for(instance_type, "key") == (None if local else "key")
    assert volume_key_field(instance_type, "key") == ({} if local else {"VolumeKmsKeyId": "key"})


def test_an_unclassified_family_is_refused_not_guessed() -> None:
    with pytest.raises(UnknownInstanceStorageError, match="not classified"):
        has_local_storage("ml.g7.xlarge")


def test_instance_type_parameters_admit_one_storage_class_of_the_allowed_types() -> None:
    allowed = ("ml.m5.*", "ml.g5.2xlarge", "ml.g4dn.xlarge")
    assert instance_type_choices("ml.m5.xlarge", "training", allowed) == (
        "ml.m5.12xlarge",
        "ml.m5.24xlarge",
        "ml.m5.2xlarge",
        "ml.m5.4xlarge",
        "ml.m5.large",
        "ml.m5.xlarge",
    )
    assert instance_type_choices("ml.g5.2xlarge", "training", allowed) == ("ml.g4dn.xlarge", "ml.g5.2xlarge")
    parameter = instance_type_parameter("TrainingInstanceType", "ml.g5.2xlarge", "training", allowed)
    assert parameter["DefaultValue"] == "ml.g5.2xlarge"
    assert "ml.m5.xlarge" not in parameter["EnumValues"]


def test_name_constraints_come_from_botocore() -> None:
    tuning = name_constraint("HyperParameterTuningJobName")
    assert tuning.max_length == 32
    assert tuning.problem("a" * 33) is not None
    assert tuning.problem("churn-prod-tune") is None
    assert name_constraint("EndpointName").problem("churn_prod") is not None


# --- config refuses it first ------------------------------------------------------------------------


def test_shipped_environments_pair_a_shadow_with_exactly_one_variant_and_have_budgets() -> None:
    for environment in load_config().environments:
        serving = environment.serving
        if serving.shadow_variant:
            assert len(serving.variants) == 1, environment.name
        assert environment.operations.monthly_budget_usd > 0
        assert environment.operations.alert_emails or environment.operations.alert_https_endpoints
        for instance_type in environment.used_instance_types().values():
            assert any(
                instance_type == allowed or instance_type.startswith(allowed.rstrip("*"))
                for allowed in environment.allowed_instance_types
            ), (environment.name, instance_type)


@pytest.mark.parametrize(
    ("env_name", "settings", "field", "words"),
    [
        (
            "prod",
            {"serving": {"variants": [{"name": "Champion", "weight": 0.9}, {"name": "Challenger", "weight": 0.1}]}},
            "serving.variants",
            "takes exactly one production variant",
        ),
        (
            "staging",
            {"serving": {"variants": [{"name": "Champion"}]}},
            "serving.variants",
            "or one variant plus a shadow",
        ),
        (
            "staging",
            {"serving": {"inference_type": "async", "shadow_variant": True}},
            "serving.shadow_variant",
            "real-time endpoints only",
        ),
        ("staging", {"training": {"instance_type": "ml.c5d.xlarge"}}, "training.instance_type", "training jobs"),
        (
            "staging",
            {"training": {"processing_instance_type": "ml.p4d.24xlarge"}},
            "training.processing_instance_type",
            "processing jobs",
        ),
        ("staging", {"serving": {"instance_type": "ml.t3.medium"}}, "serving.instance_type", "for endpoints"),
        (
            "prod",
            {"serving": {"batch_instance_type": "ml.r5.large"}},
            "serving.batch_instance_type",
            "batch transform",
        ),
        (
            "prod",
            {"serving": {"instance_type": "ml.c5.2xlarge"}, "compute": {"allowed_instance_types": ["ml.m5.*"]}},
            "compute.allowed_instance_types",
            "does not allow ml.c5.2xlarge, which serving.instance_type uses",
        ),
        ("prod", {"compute": {"allowed_instance_types": ["m5.large"]}}, "compute.allowed_instance_types[0]", "ml.m5.*"),
        (
            "prod",
            {"compute": {"allowed_instance_types": ["ml.zz9.*"]}},
            "compute.allowed_instance_types[0]",
            "matches no",
        ),
        ("prod", {"operations": {"monthly_budget_usd": 0}}, "operations.monthly_budget_usd", "between 1 and"),
        ("prod", {"data": {"checkpoint_expiry_days": 0}}, "data.checkpoint_expiry_days", "between 1 and 3650"),
    ],
)
def test_config_refuses_what_sagemaker_would_refuse_naming_the_field(
    raw: dict[str, Any], env_name: str, settings: dict[str, Any], field: str, words: str
) -> None:
    target = env(raw, env_name)
    for section, values in settings.items():
        target[section] = {**target.get(section, {}), **values}
    error = error_of(raw)
    index = [e["name"] for e in raw["environments"]].index(env_name)
    assert error.field_path == f"environments[{index}].{field}"
    assert words in str(error)


def test_allowed_instance_types_default_to_what_config_uses(raw: dict[str, Any]) -> None:
    del env(raw, "prod")["compute"]
    prod = parse_config(raw).environment("prod")
    assert prod.allowed_instance_types == ("ml.c5.xlarge", "ml.m5.2xlarge", "ml.m5.xlarge")


def test_pipeline_working_data_may_be_kept(raw: dict[str, Any]) -> None:
    env(raw, "prod")["data"]["pipeline_working_expiry_days"] = 0
    assert parse_config(raw).environment("prod").data.pipeline_working_expiry_days == 0


def test_checkpoints_of_a_tuning_trial_are_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training_env import checkpoint_dir

    monkeypatch.setenv("SM_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("TRAINING_JOB_NAME", "tune-abc-003-1a2b3c4d")
    monkeypatch.delenv("ML_PLATFORM_CHECKPOINT_PER_JOB", raising=False)
    assert checkpoint_dir() == tmp_path  # a training job of its own: the execution's prefix
    monkeypatch.setenv("ML_PLATFORM_CHECKPOINT_PER_JOB", "true")
    assert checkpoint_dir() == tmp_path / "tune-abc-003-1a2b3c4d"
