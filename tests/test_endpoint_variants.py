"""Autoscaled variants: synth refuses what SageMaker refuses while a variant is registered for scaling,
and the lock records what synthesizes."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Validations

from app import build_app
from config import parse_config
from config.settings import DEFAULT_CONFIG_PATH
from policy.endpoint_variant_guard import (
    SOURCE_SENTENCE,
    EndpointVariantGuard,
    change_problems,
    endpoint_configs,
    load_lock,
)
from tests.conftest import Synthesized, resources_of_type

ENVS = ["dev", "staging", "prod"]


def test_the_lock_records_what_synthesizes(synthesized: Synthesized) -> None:
    current = {}
    for path in synthesized.template_paths.values():
        for _logical_id, key, autoscaled, _variants in endpoint_configs(json.loads(path.read_text())):
            current[key] = autoscaled
    assert set(current) == {f"churn-{env}" for env in ENVS}
    assert load_lock() == current, "config/endpoint_variants.lock.json is stale; run `make endpoint-variant-lock`"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_lock_metadata_names_the_registered_variants(synthesized: Synthesized, env: str) -> None:
    serving = synthesized.template(env, "Serving")
    targets = resources_of_type(serving, "AWS::ApplicationAutoScaling::ScalableTarget")
    registered = sorted(t["Properties"]["ResourceId"].rsplit("/", 1)[1] for t in targets.values())
    (_, _, autoscaled, variants), *_ = endpoint_configs(serving)
    assert sorted(autoscaled) == registered
    assert all(variants[name] == instance_type for name, instance_type in autoscaled.items())


@pytest.mark.parametrize(
    ("variants", "words"),
    [
        ({"Champion": "ml.c5.2xlarge", "Shadow": "ml.c5.xlarge"}, "variant Champion changes instance type"),
        ({"Shadow": "ml.c5.xlarge"}, "variant Champion (ml.c5.xlarge) is removed"),
    ],
)
def test_a_change_sagemaker_refuses_is_refused_with_the_way_through(variants: dict[str, str], words: str) -> None:
    (problem,) = change_problems("churn-prod", {"Champion": "ml.c5.xlarge"}, variants)
    assert words in problem
    assert SOURCE_SENTENCE in problem
    assert "serving.autoscaling = false" in problem
    assert "make endpoint-variant-lock" in problem


def test_changes_sagemaker_allows_pass() -> None:
    locked = {"Champion": "ml.c5.xlarge"}
    assert change_problems("churn-prod", locked, {"Champion": "ml.c5.xlarge", "Challenger": "ml.c5.2xlarge"}) == []
    assert change_problems("churn-prod", {}, {"Champion": "ml.g5.xlarge"}) == []  # not registered any more
    assert change_problems("churn-new", None, {"Champion": "ml.g5.xlarge"}) == []  # never deployed


def _raw() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


def _synth_prod(raw: dict[str, Any], tmp_path: Path, lock: dict[str, Any]) -> str | None:
    tmp_path.mkdir(parents=True)
    lock_path = tmp_path / "lock.json"
    lock_path.write_text(json.dumps(lock))
    app = build_app(parse_config(raw), ["prod"], outdir=str(tmp_path / "out"), policy_packs=False)
    Validations.of(app).add_plugins(EndpointVariantGuard(lock_path))
    try:
        app.synth()
    except Exception as error:  # noqa: BLE001  (jsii raises a plain Exception carrying the report)
        return str(error)
    return None


@pytest.mark.slow
def test_synth_refuses_a_new_instance_type_until_autoscaling_is_off(tmp_path: Path) -> None:
    raw = copy.deepcopy(_raw())
    prod = next(e for e in raw["environments"] if e["name"] == "prod")
    prod["serving"]["instance_type"] = "ml.c5.2xlarge"
    locked = {"churn-prod": {"Champion": "ml.c5.xlarge"}}
    message = _synth_prod(raw, tmp_path / "registered", locked)
    assert message is not None
    assert "endpoint churn-prod: variant Champion changes instance type ml.c5.xlarge -> ml.c5.2xlarge" in message
    assert "(EndpointVariantGuard)" in message
    # Step 2 of the way through: the variant was deregistered by a deploy with autoscaling off.
    prod["serving"]["autoscaling"] = False
    assert _synth_prod(raw, tmp_path / "deregistered", {"churn-prod": {}}) is None
    (serving,) = (tmp_path / "deregistered" / "out").glob("assembly-Prod/ProdServing*.template.json")
    template = json.loads(serving.read_text())
    assert resources_of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget") == {}
    (_, _, autoscaled, _), *_ = endpoint_configs(template)
    assert autoscaled == {}
