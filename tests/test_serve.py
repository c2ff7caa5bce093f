"""inference_code/serve as SageMaker runs it: a process on SAGEMAKER_BIND_TO_PORT with N workers."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

SERVE = ROOT / "inference_code" / "serve"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        assert process.poll() is None, process.stderr.read() if process.stderr else b""
        try:
            if request(port, "GET", "/ping")[0] == 200:
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    raise AssertionError("serve did not answer /ping")


def environment(model_dir: Path, port: int, workers: int) -> dict[str, str]:
    return {
        **os.environ,
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
    }


def test_serve_answers_on_its_port_with_several_workers(serving_model_dir: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVE), "serve"], env=environment(serving_model_dir, port, 2), stderr=subprocess.PIPE
    )
    try:
        wait_ready(port, process)
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
