"""A trained churn model and its monitoring baselines, built once per test session for the monitoring tests.

The model is trained the way the pipeline trains it (XGBoost on the schema's features, generated
customers), evaluated with evaluate.py's own function, and baselined with baseline.py; the monitoring
job's inputs are laid out as the platform backend gives them (``baselines/<Variant>/``,
``models/<Variant>/model.tar.gz``).
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from numpy.typing import NDArray

from churn_data import generate_customers, write_training_file
from evaluate import evaluate
from feature_schema import load_schema
from scripts import local_monitoring

SCHEMA = load_schema()
NAMES = list(SCHEMA.model_features)
TRAINING_SEED = 7  # replays use other seeds: the same distribution, other customers


@dataclass(frozen=True)
class MonitoringSetup:
    root: Path
    model_dir: Path  # xgboost-model, as the serving code loads it
    archive: Path  # model.tar.gz, as the monitoring job receives it
    weak_model_dir: Path  # a clearly worse model (a challenger that should lose)
    weak_archive: Path
    baseline_data: Path
    test_data: Path
    evaluation: Path
    monitored: local_monitoring.Monitored  # Champion (and Challenger) serving the good model


def _train(features: NDArray[np.float32], labels: NDArray[np.int64], rounds: int, depth: int) -> xgb.Booster:
    return xgb.train(
        {"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "nthread": 1},
        xgb.DMatrix(features, label=labels, feature_names=NAMES),
        num_boost_round=rounds,
    )


def _save(booster: xgb.Booster, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "xgboost-model").write_bytes(booster.save_raw("ubj"))
    archive = folder.parent / f"{folder.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "xgboost-model", arcname="xgboost-model")
    return archive


def build(root: Path) -> MonitoringSetup:
    train = generate_customers(20_000, seed=TRAINING_SEED)
    test = generate_customers(6_000, seed=TRAINING_SEED + 1)
    features = train[NAMES].to_numpy(np.float32)
    booster = _train(features, train["churned"].to_numpy(), rounds=100, depth=4)
    # The weak model sees two features only: a challenger that is significantly worse.
    blind = features.copy()
    blind[:, 2:] = 0
    weak = _train(blind, train["churned"].to_numpy(), rounds=20, depth=2)
    archive = _save(booster, root / "model")
    weak_archive = _save(weak, root / "weak-model")
    baseline_data = root / "splits" / "baseline"
    baseline_data.mkdir(parents=True)
    train[NAMES].to_csv(baseline_data / "baseline.csv", index=False)  # as preprocess.py writes it
    write_training_file(test, root / "splits" / "test" / "test.csv", SCHEMA)
    evaluation = root / "evaluation.json"
    report = evaluate(booster, test[NAMES].to_numpy(np.float32), test["churned"].to_numpy())
    evaluation.write_text(json.dumps(report))
    monitored = local_monitoring.prepare(
        root / "monitoring",
        model_archive=archive,
        baseline_data=baseline_data,
        test_data=root / "splits" / "test",
        evaluation=evaluation,
        variants=("Champion", "Challenger"),
        sample_size=50_000,
    )
    return MonitoringSetup(
        root=root,
        model_dir=root / "model",
        archive=archive,
        weak_model_dir=root / "weak-model",
        weak_archive=weak_archive,
        baseline_data=baseline_data,
        test_data=root / "splits" / "test",
        evaluation=evaluation,
        monitored=monitored,
    )


_CACHE: dict[Path, MonitoringSetup] = {}


def monitoring_setup(factory: pytest.TempPathFactory) -> MonitoringSetup:
    """The session's setup (built by the first monitoring test that asks for it)."""
    base = factory.getbasetemp() / "monitoring-setup"
    if base not in _CACHE:
        base.mkdir(exist_ok=True)
        _CACHE[base] = build(base)
    return _CACHE[base]
