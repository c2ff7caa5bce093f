"""One feature schema, four users: the feature group, preprocessing and training, inference, the baseline.

The chain runs for real: generated raw data -> preprocess.py -> train.py -> the inference server,
and the Feature Store construct is synthesized. Each user's view of the features is compared with
the schema. The same chain then runs on a schema with a renamed feature, and every user follows.
Finally the source tree is scanned: no code outside the schema writes a feature name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import xgboost as xgb
from aws_cdk import App, Environment, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

import feature_schema
import inference
from churn_data import generate_customers
from config import FeatureStoreSettings
from feature_schema import FeatureSchema, load_schema
from platform_constructs.feature_store import FeatureStore
from preprocess import main as preprocess_main
from tests.conftest import Synthesized, asgi_request, resources_of_type
from train import main as train_main
from training_env import run_job

ROOT = Path(__file__).resolve().parent.parent


def feature_group_properties(schema: FeatureSchema) -> dict[str, Any]:
    """The FeatureGroup the construct makes from ``schema`` (a bare stack, no lock, no guard)."""
    app = App()
    stack = Stack(app, "Features", env=Environment(account="222222222222", region="eu-west-1"))
    FeatureStore(
        stack,
        "FeatureStore",
        schema=schema,
        settings=FeatureStoreSettings(),
        project="churn",
        env_name="dev",
        features_bucket=s3.Bucket.from_bucket_name(stack, "Features", "features"),
        results_bucket=s3.Bucket.from_bucket_name(stack, "Results", "results"),
        key=kms.Key(stack, "Key"),
        retain=False,
    )
    template = app.synth().get_stack_by_name("Features").template
    (group,) = resources_of_type(template, "AWS::SageMaker::FeatureGroup").values()
    return dict(group["Properties"])


def run_chain(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """preprocess -> train -> serve on generated data; what each step saw of the features."""
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    raw, out, model = root / "raw", root / "processed", root / "model"
    raw.mkdir(parents=True)
    data = generate_customers(1500, seed=21)
    data[list(reversed(data.columns))].to_csv(raw / "customers.csv", index=False)  # column order must not matter
    preprocess_main(["--input-dir", str(raw), "--output-dir", str(out), "--shards", "1"])
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(out / "train"))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(out / "validation"))
    monkeypatch.setenv("SM_MODEL_DIR", str(model))
    assert run_job(train_main, ["--num_round", "15", "--nthread", "1", "--early_stopping_rounds", "0"]) == 0
    booster = xgb.Booster(model_file=str(model / "xgboost-model"))
    training_file = pd.read_csv(next((out / "train").glob("*.csv")), header=None)
    served = inference.model_fn(model)  # what the server loads
    return {
        "data": data,
        "baseline header": list(pd.read_csv(out / "baseline" / "baseline.csv", nrows=0).columns),
        "training file columns": training_file.shape[1],
        "model features": list(booster.feature_names or []),
        "inference features": list(served.feature_names),
        "model dir": model,
    }


def disagreements(schema: FeatureSchema, group: dict[str, Any], seen: dict[str, Any]) -> list[str]:
    """Every place a user's view of the features differs from the schema."""
    problems = []
    definitions = [(d["FeatureName"], d["FeatureType"]) for d in group["FeatureDefinitions"]]
    if definitions != schema.feature_store_definitions():
        problems.append(f"feature group definitions {definitions} != schema {schema.feature_store_definitions()}")
    if (group["RecordIdentifierFeatureName"], group["EventTimeFeatureName"]) != (
        schema.record_identifier.name,
        schema.event_time.name,
    ):
        problems.append("feature group identifier or event time differ from the schema")
    if seen["training file columns"] != len(schema.training_columns):
        problems.append(
            f"training files have {seen['training file columns']} columns, not {len(schema.training_columns)}"
        )
    for user in ("model features", "inference features", "baseline header"):
        if seen[user] != list(schema.model_features):
            problems.append(f"{user} {seen[user]} != schema {list(schema.model_features)}")
    return problems


def assert_inference_contract(schema: FeatureSchema, seen: dict[str, Any]) -> None:
    """JSON records are checked by the schema's names, CSV rows by its feature count."""
    from server import app, load

    load(seen["model dir"], fast_path=False)
    row = seen["data"].iloc[0]
    record = {name: float(row[name]) for name in schema.model_features}
    ok = asgi_request(
        app, "POST", "/invocations", json.dumps({"instances": [record]}).encode(), {"Content-Type": "application/json"}
    )
    assert ok.status == 200, ok.body
    first = schema.model_features[0]
    renamed = {("not_" + first if k == first else k): v for k, v in record.items()}
    refused = asgi_request(
        app, "POST", "/invocations", json.dumps({"instances": [renamed]}).encode(), {"Content-Type": "application/json"}
    )
    assert refused.status == 400
    assert f"unknown feature(s) not_{first}" in refused.body.decode()
    values = ",".join(str(float(row[name])) for name in schema.model_features)
    assert asgi_request(app, "POST", "/invocations", values.encode(), {"Content-Type": "text/csv"}).status == 200
    short = asgi_request(app, "POST", "/invocations", values.rsplit(",", 1)[0].encode(), {"Content-Type": "text/csv"})
    assert short.status == 400
    assert f"expects {len(schema.model_features)} values" in short.body.decode()


def test_the_four_users_agree_with_the_schema(
    synthesized: Synthesized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = load_schema()
    seen = run_chain(tmp_path, monkeypatch)
    for env in ("dev", "staging", "prod"):  # the feature groups that really synthesize
        (group,) = resources_of_type(synthesized.template(env, "Data"), "AWS::SageMaker::FeatureGroup").values()
        assert disagreements(schema, group["Properties"], seen) == []
    assert_inference_contract(schema, seen)


def test_renaming_a_feature_in_the_schema_renames_it_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.loads(feature_schema.SCHEMA_PATH.read_text())
    old = data["features"][0]["name"]
    data["features"][0]["name"] = "months_as_customer"
    renamed_path = tmp_path / "feature_schema.json"
    renamed_path.write_text(json.dumps(data))
    monkeypatch.setattr(feature_schema, "SCHEMA_PATH", renamed_path)
    schema = load_schema()
    assert "months_as_customer" in schema.model_features
    assert old not in schema.model_features
    seen = run_chain(tmp_path / "run", monkeypatch)
    assert disagreements(schema, feature_group_properties(schema), seen) == []
    assert seen["model features"][0] == "months_as_customer"
    assert_inference_contract(schema, seen)


def test_a_user_that_drifts_from_the_schema_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = load_schema()
    group = feature_group_properties(schema)
    seen = {
        "training file columns": len(schema.training_columns),
        "model features": list(schema.model_features),
        "inference features": list(schema.model_features),
        "baseline header": [*schema.model_features[:-1], "stale_name"],
    }
    group["FeatureDefinitions"] = group["FeatureDefinitions"][:-1]
    problems = disagreements(schema, group, seen)
    assert len(problems) == 2
    assert problems[0].startswith("feature group definitions")
    assert "stale_name" in problems[1]


SCANNED = (
    "app.py",
    "config",
    "platform_constructs",
    "stacks",
    "policy",
    "scripts",
    "benchmarks",
    "training_code",
    "inference_code",
    "monitoring_code",
)
GENERATED = {"training_code/feature_schema.json", "config/feature_groups.lock.json"}


def test_the_schema_is_the_only_place_feature_names_are_written() -> None:
    names = [column.name for column in load_schema().features]
    word = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    offenders = []
    for entry in SCANNED:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if relative in GENERATED or "__pycache__" in relative:
                continue
            for number, line in enumerate(file.read_text(errors="replace").splitlines(), start=1):
                if word.search(line):
                    offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "feature names written outside the schema:\n" + "\n".join(offenders)
