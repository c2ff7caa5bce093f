"""inference_code/serve as SageMaker runs it: a process on SAGEMAKER_BIND_TO_PORT with N workers."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.local_serving import SERVE, free_port, request, wait_for_ping
from scripts.local_serving import serve_environment as environment

pytestmark = pytest.mark.slow


def test_serve_answers_on_its_port_with_several_workers(serving_model_dir: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVE), "serve"], env=environment(serving_model_dir, port, 2), stderr=subprocess.PIPE
    )
    try:
        wait_for_ping(port, process)
        status, body = request(
            port, "POST", "/invocations", b"12,70.5,845.2,1,2,0,2,1,1,0", {"Content-Type": "text/csv"}
        )
        assert status == 200
        assert 0 < float(body) < 1
        workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False)
        assert len(workers.stdout.split()) >= 2  # one process per worker (plus uvicorn's helper)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_refuses_to_start_without_a_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SERVE)],
        env=environment(tmp_path, free_port(), 1),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"no model at {tmp_path}/xgboost-model" in result.stderr


def test_serve_rejects_unknown_arguments(serving_model_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SERVE), "train"],
        env=environment(serving_model_dir, free_port(), 1),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unexpected arguments: train" in result.stderr


def test_serve_refuses_a_malformed_setting(serving_model_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SERVE)],
        env={**environment(serving_model_dir, free_port(), 2), "ML_PLATFORM_SERVING_ROWS_PER_THREAD": "lots"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "ML_PLATFORM_SERVING_ROWS_PER_THREAD must be a whole number of at least 1 (got 'lots')" in result.stderr
