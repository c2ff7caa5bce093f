"""Local runs: the serving runner writes SageMaker's data capture, the monitor reads it as the job would;
the local monitoring demo and the benchmark run end to end on small inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import monitoring_benchmark
from capture_format import Malformed, read_capture
from feature_schema import load_schema
from scripts import local_monitoring, local_serving
from tests.monitoring_support import MonitoringSetup, monitoring_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> MonitoringSetup:
    return monitoring_setup(tmp_path_factory)


@pytest.mark.slow
def test_the_serving_runner_writes_capture_the_monitor_reads(setup, tmp_path) -> None:
    printed = local_serving.demo(setup.archive, customers=5, capture_dir=tmp_path / "capture")
    assert "capture: 301 requests in SageMaker's format" in printed  # one JSON request of 5, 300 one-row requests
    (path,) = (tmp_path / "capture").rglob("*.jsonl")
    parts = path.relative_to(tmp_path / "capture").parts
    assert parts[:2] == ("churn-local", "Champion")
    assert [len(p) for p in parts[2:6]] == [4, 2, 2, 2]  # yyyy/mm/dd/hh
    first = json.loads(path.read_text().splitlines()[0])
    assert first["captureData"]["endpointInput"]["observedContentType"] == "application/json"
    assert first["captureData"]["endpointInput"]["encoding"] == "JSON"
    assert first["eventMetadata"]["inferenceId"].startswith("demo-")
    malformed: dict[str, Malformed] = {}
    rows = list(read_capture(tmp_path / "capture", load_schema().model_features, malformed=malformed))
    assert sum(len(c) for c in rows) == 305
    assert malformed["Champion"].total == 0
    assert {len(row.split(",")) for c in rows for row in c.rows} == {10}


def test_the_local_demo_baselines_the_trained_model_and_replays_clean_and_shifted(setup, tmp_path) -> None:
    training = tmp_path / "training"  # the layout scripts.local_training leaves
    (training / "train" / "output").mkdir(parents=True)
    shutil.copy(setup.archive, training / "train" / "output" / "model.tar.gz")
    splits = training / "preprocess" / "processing" / "output"
    shutil.copytree(setup.baseline_data, splits / "baseline")
    shutil.copytree(setup.test_data, splits / "test")
    evaluation = training / "evaluate" / "processing" / "output" / "evaluation"
    evaluation.mkdir(parents=True)
    shutil.copy(setup.evaluation, evaluation / "evaluation.json")
    printed = local_monitoring.demo(training, tmp_path / "monitoring", records=2000)
    assert "clean replay (the training distribution), 2000 records:" in printed
    assert "shifted replay (monthly_charges x1.3), 2000 records:" in printed
    assert "(drifted: monthly_charges)" in printed
    assert printed.count("report: ") == 2
    assert (tmp_path / "monitoring" / "shifted" / "report" / "report.html").is_file()
    with pytest.raises(FileNotFoundError, match="train one first"):
        local_monitoring.demo(tmp_path / "nothing", tmp_path / "monitoring")


@pytest.mark.slow
def test_the_benchmark_runs_on_a_small_window(tmp_path, capsys) -> None:
    assert monitoring_benchmark.main(["--records", "3000", "--keep", str(tmp_path / "bench")]) == 0
    printed = capsys.readouterr().out
    assert "monitor.py: " in printed
    assert " records/s" in printed
    assert "peak memory (the monitor process's max RSS): " in printed
    summary = json.loads((tmp_path / "bench" / "output" / "summary.json").read_text())
    assert sum(v["records"] for v in summary["variants"].values()) == 3000
    assert Path(tmp_path / "bench" / "output" / "report.html").is_file()
