"""train.py: the SageMaker training contract, bad data, checkpoints, resume, distributed, GPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from churn_data import generate_customers, split_of, write_training_file
from feature_schema import load_schema
from scripts.local_training import LocalPipelineResult, run_pipeline, run_training
from tests.conftest import ROOT
from train import Hyperparameters
from train import main as train_main
from training_env import run_job

SCHEMA = load_schema()
FAST = ["--num_round", "40", "--nthread", "1", "--checkpoint_frequency", "10", "--early_stopping_rounds", "10"]


@pytest.fixture
def channels(sagemaker_root: Path) -> Path:
    """train/ and validation/ channels with a few thousand customers, in the training layout."""
    data = generate_customers(3000, seed=11)
    split = split_of(data["customer_id"], 42, (0.75, 0.25))
    for index, name in enumerate(("train", "validation")):
        write_training_file(data[split == index], sagemaker_root / "input" / "data" / name / "part-00000.csv", SCHEMA)
    return sagemaker_root


def failure(root: Path) -> str:
    return (root / "output" / "failure").read_text()


def replace_channel(root: Path, name: str, content: str, filename: str = "part-00000.csv") -> None:
    folder = root / "input" / "data" / name
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / filename).write_text(content)


def test_trains_a_model_the_serving_container_loads(channels: Path) -> None:
    assert run_job(train_main, FAST) == 0
    path = channels / "model" / "xgboost-model"
    # How the managed XGBoost container loads it (serve_utils): a Booster, then load_model(path).
    booster = xgb.Booster()
    booster.load_model(str(path))
    assert booster.feature_names == list(SCHEMA.model_features)
    rows = generate_customers(5, seed=99)[list(SCHEMA.model_features)].to_numpy(dtype=np.float32)
    scores = booster.predict(xgb.DMatrix(rows, feature_names=list(SCHEMA.model_features)))
    assert scores.shape == (5,)
    assert ((scores > 0) & (scores < 1)).all()
    metrics = json.loads((channels / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation"]["auc"] > 0.75
    assert booster.num_boosted_rounds() == metrics["best_round"]  # cut at the best round
    train_rows = len(pd.read_csv(channels / "input" / "data" / "train" / "part-00000.csv", header=None))
    assert metrics["train_metric_rows"] == train_rows  # a small set is measured whole
    assert metrics["train"]["auc"] >= metrics["validation"]["auc"] - 0.05


def test_training_metrics_of_a_large_set_use_a_seeded_sample() -> None:
    from churn_data import TrainingData
    from train import TRAIN_METRIC_ROWS, training_sample

    rows = TRAIN_METRIC_ROWS + 7_000
    features = np.arange(rows * 10, dtype=np.float32).reshape(rows, 10)
    data = TrainingData(features=features, labels=(np.arange(rows) % 2).astype(np.float32), files=("a",))
    first, count = training_sample(data, list(SCHEMA.model_features), seed=42)
    again, _ = training_sample(data, list(SCHEMA.model_features), seed=42)
    assert count == first.num_row() == TRAIN_METRIC_ROWS
    assert np.array_equal(first.get_label(), again.get_label())  # the same sample every run


def test_hyperparameters_file_and_command_line(channels: Path) -> None:
    config = channels / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"num_round": "15", "max_depth": "3", "nthread": "1"}))
    assert run_job(train_main, ["--max_depth", "2", "--early_stopping_rounds", "0"]) == 0
    booster = xgb.Booster(model_file=str(channels / "model" / "xgboost-model"))
    assert booster.num_boosted_rounds() == 15
    # Leaves of a depth-2 tree sit two tabs deep in the text dump: the command line won.
    depth = max(len(line) - len(line.lstrip("\t")) for tree in booster.get_dump() for line in tree.splitlines())
    assert depth == 2


def test_checkpoints_every_n_rounds_keeping_the_newest(channels: Path) -> None:
    assert run_job(train_main, ["--num_round", "50", "--nthread", "1", "--early_stopping_rounds", "0"]) == 0
    names = sorted(p.name for p in (channels / "checkpoints").iterdir())
    assert names == ["checkpoint-000040.ubj", "checkpoint-000050.ubj"]


def test_restart_resumes_from_the_newest_checkpoint(channels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_job(train_main, ["--num_round", "20", "--nthread", "1", "--early_stopping_rounds", "0"]) == 0
    (channels / "checkpoints" / "checkpoint-000030.ubj").write_bytes(b"torn by an interruption")
    capsys.readouterr()
    assert run_job(train_main, ["--num_round", "35", "--nthread", "1", "--early_stopping_rounds", "0"]) == 0
    out = capsys.readouterr().out
    assert "Skipping unreadable checkpoint checkpoint-000030.ubj" in out
    assert "Resuming from checkpoint checkpoint-000020.ubj: 20 of 35 rounds done" in out
    assert xgb.Booster(model_file=str(channels / "model" / "xgboost-model")).num_boosted_rounds() == 35


@pytest.mark.parametrize(
    ("channel", "content", "message"),
    [
        (
            "train",
            "churned,tenure,monthly_charges\n0,1,2\n",
            "the first line ('churned,tenure,monthly_charges') is a header",
        ),
        ("train", "0,1,2,3,4,5,6,7,8,9,1\n1,1,2,3\n", "line 2 has 4 columns; expected 11"),
        (
            "train",
            "0,1,2,3,4,5,6,7,8,9,1\n1,1,abc,3,4,5,6,7,8,9,0\n",
            "line 2: monthly_charges = 'abc' is not a number",
        ),
        ("train", "0,1,2,3,4,5,6,7,8,9,1\n2,1,2,3,4,5,6,7,8,9,0\n", "line 2: label churned = 2; it must be 0 or 1"),
        ("train", "0,1,2,3,4,5,6,7,8,9,1\n,1,2,3,4,5,6,7,8,9,0\n", "line 2 has no label (churned is empty)"),
        ("validation", "0,1,2,3,4,5,6,7,8,9,1\n0,2,2,3,4,5,6,7,8,9,1\n", "channel 'validation' has only label 0"),
        ("train", "", "channel 'train': the files in"),
    ],
)
def test_bad_training_data_fails_with_the_reason(channels: Path, channel: str, content: str, message: str) -> None:
    replace_channel(channels, channel, content)
    assert run_job(train_main, FAST) == 2
    assert failure(channels).startswith("Bad data: ")
    assert message in failure(channels)
    assert not (channels / "model" / "xgboost-model").exists()


def test_a_channel_without_files_is_named(channels: Path) -> None:
    replace_channel(channels, "train", "not data", filename="README.txt")
    assert run_job(train_main, FAST) == 2
    assert "channel 'train': no .csv, .csv.gz or .parquet files" in failure(channels)
    assert "README.txt" in failure(channels)


def test_parquet_channels_are_read_by_name(channels: Path) -> None:
    data = generate_customers(2000, seed=5)
    for name in ("train", "validation"):
        folder = channels / "input" / "data" / name
        shutil.rmtree(folder)
        write_training_file(data, folder / "part-00000.parquet", SCHEMA)
    assert run_job(train_main, FAST) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max_dept", "3"], "unknown hyperparameter 'max_dept'"),
        (["--eta", "fast"], "hyperparameter eta = 'fast' is not a number"),
        (["--max_depth", "0"], "max_depth = 0 must be between 1 and 64"),
        (["--device", "tpu"], "device = 'tpu'; choose one of auto, cpu, cuda"),
        (["--device", "cuda"], "device=cuda but this instance has no GPU"),
        (["--num_round"], "come as --name value pairs"),
    ],
)
def test_bad_hyperparameters_fail_with_the_reason(channels: Path, argv: list[str], message: str) -> None:
    assert run_job(train_main, argv) == 2
    assert failure(channels).startswith("Bad configuration: ")
    assert message in failure(channels)


def test_sagemaker_framework_settings_are_not_hyperparameters() -> None:
    parsed = Hyperparameters.parse({"sagemaker_program": "train.py", "lambda": "2", "num_round": "7.0"})
    assert (parsed.reg_lambda, parsed.num_round) == (2.0, 7)


def test_a_real_process_exits_non_zero_with_the_failure_file(channels: Path) -> None:
    replace_channel(channels, "train", "churned,tenure\n0,1\n")
    environment = {**os.environ, "SAGEMAKER_BASE_DIR": str(channels)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "training_code" / "train.py"), *FAST],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2
    assert "is a header" in failure(channels)
    assert "is a header" in result.stderr


@pytest.fixture(scope="module")
def one_worker_run(tmp_path_factory: pytest.TempPathFactory) -> LocalPipelineResult:
    """make run's path: a point-in-time training set from a local offline store, then the pipeline."""
    return run_pipeline(
        tmp_path_factory.mktemp("one-worker"), rows=20_000, source="feature_store", progress=lambda _: None
    )


def auc_of(run: LocalPipelineResult) -> float:
    metrics = run.evaluation["binary_classification_metrics"]
    assert isinstance(metrics, dict)
    return float(metrics["auc"]["value"])


@pytest.mark.slow
def test_the_feature_store_path_builds_the_training_set_the_job_builds(one_worker_run: LocalPipelineResult) -> None:
    report = json.loads(
        (one_worker_run.run_dir / "build-training-set/processing/output/report/training_set.json").read_text()
    )
    assert report["engine"] == "duckdb"
    assert report["rows"] == {"labels": 20_000, "returned": 20_000, "with_features": 20_000, "without_features": 0}
    assert report["labels_dataset"] == "current"
    assert set(one_worker_run.seconds) == {"training set", "preprocess", "train", "evaluate"}


@pytest.mark.slow
def test_two_workers_on_localhost_match_one_worker(tmp_path: Path, one_worker_run: LocalPipelineResult) -> None:
    # The raw path on the same customers: the training set holds the same rows, so the models agree.
    two = run_pipeline(tmp_path, rows=20_000, workers=2, progress=lambda _: None)
    assert any("algo-1 is worker 0 of 2" in line for line in two.training.log)
    assert abs(auc_of(one_worker_run) - auc_of(two)) <= 0.01
    validation_auc = one_worker_run.training.final_metrics["validation-auc"]
    assert abs(validation_auc - two.training.final_metrics["validation-auc"]) <= 0.01


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_and_finishes(
    tmp_path: Path, one_worker_run: LocalPipelineResult
) -> None:
    resumed = run_pipeline(tmp_path, rows=20_000, interrupt=True, progress=lambda _: None)
    assert resumed.training.interrupted_at_round is not None
    assert resumed.training.resumed_from is not None
    assert f"checkpoint-{resumed.training.interrupted_at_round:06d}.ubj" in resumed.training.resumed_from
    assert abs(auc_of(one_worker_run) - auc_of(resumed)) <= 0.01


def _gpu_available() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        xgb.train({"device": "cuda", "tree_method": "hist"}, xgb.DMatrix(np.ones((4, 2)), label=[0, 1, 0, 1]), 1)
    except xgb.core.XGBoostError:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs an NVIDIA GPU and a CUDA build of xgboost")
def test_gpu_training_with_device_auto(
    channels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SM_NUM_GPUS", "1")  # what SageMaker sets on a GPU instance
    assert run_job(train_main, ["--num_round", "40", "--early_stopping_rounds", "0"]) == 0
    assert "device=cuda" in capsys.readouterr().out
    metrics = json.loads((channels / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation"]["auc"] > 0.75


def test_no_training_runs_with_an_unknown_current_host(channels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_HOSTS", json.dumps(["algo-1", "algo-2"]))
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-9")
    assert run_job(train_main, FAST) == 2
    assert "SM_CURRENT_HOST 'algo-9' is not among SM_HOSTS" in failure(channels)


def test_local_runner_refuses_too_few_shards(tmp_path: Path) -> None:
    splits = tmp_path / "splits"
    for name in ("train", "validation"):
        write_training_file(generate_customers(100), splits / name / "part-00000.csv", SCHEMA)
    with pytest.raises(RuntimeError, match="2 workers need at least 2 training shards"):
        run_training(tmp_path / "run", splits, workers=2)
