"""Serve a trained model locally with the container's own entry point and score a few customers.

``inference_code/serve`` runs as SageMaker runs it (``SM_MODEL_DIR``, ``SAGEMAKER_BIND_TO_PORT``,
``SAGEMAKER_MODEL_SERVER_WORKERS``), on a free port of this machine.

    python -m scripts.local_serving --model .local/training/train/output/model.tar.gz
    python -m scripts.local_serving --capture .local/capture   # also write the requests as data capture
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "inference_code" / "serve"
MONITORING_CODE = ROOT / "monitoring_code"
CAPTURE_ENDPOINT = "churn-local"  # the endpoint and variant names local capture is filed under
CAPTURE_VARIANT = "Champion"
MODEL_FILE = "xgboost-model"  # what SageMaker's model.tar.gz holds and serve loads
TRAINING_CODE = ROOT / "training_code"
WARM_UP_SECONDS = 2.0  # workers build the ONNX fast path and import pandas after /ping answers
WARM_UP_REQUESTS = 50


class ServerFailedError(RuntimeError):
    """The server did not start or answered with an error."""


@dataclass
class LocalServer:
    port: int
    process: subprocess.Popen[bytes]
    startup_seconds: float

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        return request(self.port, method, path, body, headers)


class CaptureLog:
    """What the endpoint's data capture would write for the requests this runner sends.

    SageMaker captures requests and answers at the endpoint, outside the container, so locally the
    runner records them, in SageMaker's format and layout (``monitoring_code/capture_format.py``).
    """

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []

    def add(self, body: bytes, content_type: str, answer: bytes, accept: str, inference_id: str | None = None) -> None:
        self.records.append(
            _capture_format().capture_record(
                input_data=body.decode(),
                output_data=answer.decode(),
                event_id=str(uuid.uuid4()),
                inference_id=inference_id,
                inference_time=datetime.now(UTC),
                input_content_type=content_type,
                output_content_type=accept,
            )
        )

    def write(self, root: Path, endpoint: str = CAPTURE_ENDPOINT, variant: str = CAPTURE_VARIANT) -> list[Path]:
        """``root/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl``, as the endpoint's capture writes it."""
        paths: list[Path] = _capture_format().write_capture(
            root, endpoint, variant, self.records, f"local-{uuid.uuid4().hex[:12]}"
        )
        return paths


@functools.cache
def _capture_format() -> Any:
    """monitoring_code/capture_format.py (the runtime folders are not packages)."""
    sys.path.insert(0, str(MONITORING_CODE))
    try:
        import capture_format
    finally:
        sys.path.remove(str(MONITORING_CODE))
    return capture_format


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """(status, body) of one request to a server on this machine, on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def serve_environment(model_dir: Path, port: int, workers: int) -> dict[str, str]:
    """The environment SageMaker gives ``serve``: model folder, port, worker count."""
    return {
        **os.environ,
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
    }


def wait_for_ping(port: int, process: subprocess.Popen[bytes], *, timeout: float = 60) -> float:
    """Seconds until ``GET /ping`` answers 200; ServerFailedError if the process exits or time runs out."""
    started = time.perf_counter()
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise ServerFailedError(f"server exited {process.returncode}: {error[-2000:]}")
        if time.perf_counter() - started > timeout:
            raise ServerFailedError(f"server did not answer /ping within {timeout:.0f} s")
        try:
            if request(port, "GET", "/ping")[0] == 200:
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.01)


def unpack_model(archive: Path, folder: Path) -> Path:
    """model.tar.gz -> folder/xgboost-model, as SageMaker unpacks it into /opt/ml/model.

    Only the model file is copied out, by name: no archive path is ever written to (and no need for
    tarfile's extraction filters, which Python 3.11 gained in 3.11.4).
    """
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if Path(m.name).name == MODEL_FILE and m.isfile()), None)
        content = tar.extractfile(member) if member is not None else None
        if content is None:
            raise ServerFailedError(f"{archive} holds no {MODEL_FILE} (found {tar.getnames()[:5]})")
        (folder / MODEL_FILE).write_bytes(content.read())
    return folder


@contextlib.contextmanager
def running_server(model_dir: Path, *, workers: int = 2, timeout: float = 60) -> Iterator[LocalServer]:
    """``inference_code/serve`` on a free port; ready (``/ping`` 200) when the block starts."""
    port = free_port()
    environment = serve_environment(model_dir, port, workers)
    process = subprocess.Popen([sys.executable, str(SERVE), "serve"], env=environment, stderr=subprocess.PIPE)
    try:
        yield LocalServer(port, process, wait_for_ping(port, process, timeout=timeout))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def sample_customers(count: int, seed: int = 2026) -> list[dict[str, object]]:
    sys.path.insert(0, str(TRAINING_CODE))
    try:
        from churn_data import generate_customers
        from feature_schema import load_schema
    finally:
        sys.path.remove(str(TRAINING_CODE))
    names = list(load_schema().model_features)
    frame = generate_customers(count, seed=seed)
    return [
        {"customer_id": row["customer_id"], "features": {name: row[name] for name in names}}
        for row in frame.to_dict(orient="records")
    ]


def score_customers(
    server: LocalServer, customers: list[dict[str, object]], capture: CaptureLog | None = None
) -> list[float]:
    body = json.dumps({"instances": [c["features"] for c in customers]}, default=float).encode()
    status, payload = server.request(
        "POST", "/invocations", body, {"Content-Type": "application/json", "Accept": "application/json"}
    )
    if status != 200:
        raise ServerFailedError(f"/invocations answered {status}: {payload.decode(errors='replace')}")
    if capture is not None:
        capture.add(body, "application/json", payload, "application/json", inference_id=f"demo-{uuid.uuid4().hex[:8]}")
    return [float(item["score"]) for item in json.loads(payload)["predictions"]]


def single_row_latency(
    server: LocalServer, customers: list[dict[str, object]], requests: int = 300, capture: CaptureLog | None = None
) -> tuple[float, float]:
    """Median and p99 milliseconds of one-row CSV requests on one kept-alive connection, once the
    workers have finished their background warm-up (about a second after the first /ping)."""
    rows = [",".join(str(v) for v in c["features"].values()).encode() for c in customers]  # type: ignore[attr-defined]
    time.sleep(max(0.0, WARM_UP_SECONDS - server.startup_seconds))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    timings = []
    try:
        for index in range(WARM_UP_REQUESTS + requests):
            started = time.perf_counter()
            connection.request(
                "POST", "/invocations", body=rows[index % len(rows)], headers={"Content-Type": "text/csv"}
            )
            response = connection.getresponse()
            answer = response.read()
            if index >= WARM_UP_REQUESTS:
                timings.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise ServerFailedError(f"/invocations answered {response.status}")
            if capture is not None and index >= WARM_UP_REQUESTS:
                capture.add(rows[index % len(rows)], "text/csv", answer, "text/csv", inference_id=f"latency-{index}")
    finally:
        connection.close()
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


def demo(archive: Path, customers: int = 5, capture_dir: Path | None = None) -> str:
    """Serve ``archive``, score ``customers`` sample customers, report answers and latency; with
    ``capture_dir``, write the requests and answers there as the endpoint's data capture would."""
    capture = CaptureLog() if capture_dir is not None else None
    with tempfile.TemporaryDirectory() as folder:
        model_dir = unpack_model(archive, Path(folder))
        with running_server(model_dir) as server:
            sample = sample_customers(customers)
            scores = score_customers(server, sample, capture)
            median, p99 = single_row_latency(server, sample, capture=capture)
    lines = [f"serve: ready in {server.startup_seconds:.2f} s on port {server.port} (2 workers)"]
    for customer, score in zip(sample, scores, strict=True):
        features = customer["features"]
        assert isinstance(features, dict)
        shown = ", ".join(f"{name} {features[name]:g}" for name in list(features)[:4])  # the schema's first four
        lines.append(f"  {customer['customer_id']}: churn probability {score:.3f} ({shown}, ...)")
    lines.append(f"latency of one-row requests over HTTP: median {median:.2f} ms, p99 {p99:.2f} ms")
    if capture is not None and capture_dir is not None:
        paths = capture.write(capture_dir)
        lines.append(f"capture: {len(capture.records)} requests in SageMaker's format, {paths[0].parent}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=ROOT / ".local" / "training" / "train" / "output" / "model.tar.gz"
    )
    parser.add_argument("--customers", type=int, default=5)
    parser.add_argument("--capture", type=Path, help="write the requests as SageMaker data capture under this folder")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no model at {args.model}; train one first: python -m scripts.local_training")
    try:
        print(demo(args.model, args.customers, args.capture))
    except ServerFailedError as error:
        print(f"Local serving failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
