"""Serve a trained model locally with the container's own entry point and score a few customers.

``inference_code/serve`` runs as SageMaker runs it (``SM_MODEL_DIR``, ``SAGEMAKER_BIND_TO_PORT``,
``SAGEMAKER_MODEL_SERVER_WORKERS``), on a free port of this machine.

    python -m scripts.local_serving --model .local/training/train/output/model.tar.gz
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "inference_code" / "serve"
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


def score_customers(server: LocalServer, customers: list[dict[str, object]]) -> list[float]:
    body = json.dumps({"instances": [c["features"] for c in customers]}, default=float).encode()
    status, payload = server.request(
        "POST", "/invocations", body, {"Content-Type": "application/json", "Accept": "application/json"}
    )
    if status != 200:
        raise ServerFailedError(f"/invocations answered {status}: {payload.decode(errors='replace')}")
    return [float(item["score"]) for item in json.loads(payload)["predictions"]]


def single_row_latency(
    server: LocalServer, customers: list[dict[str, object]], requests: int = 300
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
            response.read()
            if index >= WARM_UP_REQUESTS:
                timings.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise ServerFailedError(f"/invocations answered {response.status}")
    finally:
        connection.close()
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


def demo(archive: Path, customers: int = 5) -> str:
    """Serve ``archive``, score ``customers`` sample customers, report answers and latency."""
    with tempfile.TemporaryDirectory() as folder:
        model_dir = unpack_model(archive, Path(folder))
        with running_server(model_dir) as server:
            sample = sample_customers(customers)
            scores = score_customers(server, sample)
            median, p99 = single_row_latency(server, sample)
    lines = [f"serve: ready in {server.startup_seconds:.2f} s on port {server.port} (2 workers)"]
    for customer, score in zip(sample, scores, strict=True):
        features = customer["features"]
        assert isinstance(features, dict)
        shown = ", ".join(f"{name} {features[name]:g}" for name in list(features)[:4])  # the schema's first four
        lines.append(f"  {customer['customer_id']}: churn probability {score:.3f} ({shown}, ...)")
    lines.append(f"latency of one-row requests over HTTP: median {median:.2f} ms, p99 {p99:.2f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=ROOT / ".local" / "training" / "train" / "output" / "model.tar.gz"
    )
    parser.add_argument("--customers", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no model at {args.model}; train one first: python -m scripts.local_training")
    try:
        print(demo(args.model, args.customers))
    except ServerFailedError as error:
        print(f"Local serving failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
