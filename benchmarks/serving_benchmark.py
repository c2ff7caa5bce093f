"""Serving benchmark: the inference server against the same HTTP stack answering a constant (the floor).

Prints figures; it asserts nothing (speed is not a test). Needs `wrk` (Debian package `wrk`).

    .venv/bin/python -m benchmarks.serving_benchmark            # 3 runs of 8 s per measurement

Setup, the same for both servers: a 200-tree, depth-6 model on the schema's ten features, 2 worker
processes, loopback, `wrk -t1`, one request body per run; the floor is uvicorn (httptools, uvloop)
with 2 workers running an ASGI app that reads the body and returns a constant. Servers alternate
within each repetition, and the median of the repetitions is reported.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "training_code"), str(ROOT / "inference_code")]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import xgboost as xgb

import inference
from churn_data import generate_customers
from feature_schema import load_schema
from scripts.local_serving import free_port, running_server, wait_for_ping

CONSTANT_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/csv"), (b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"0.5\\n"})
"""
LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)


def train_model(folder: Path) -> Path:
    names = list(load_schema().model_features)
    data = generate_customers(20_000, seed=5)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 1},
        xgb.DMatrix(data[names].to_numpy(np.float32), label=data["churned"], feature_names=names),
        num_boost_round=200,
    )
    (folder / "xgboost-model").write_bytes(booster.save_raw("ubj"))
    return folder


def csv_rows(count: int, seed: int = 9) -> bytes:
    names = list(load_schema().model_features)
    frame = generate_customers(count, seed=seed)[names]
    return "\n".join(",".join(f"{v:g}" for v in row) for row in frame.to_numpy()).encode()


def six_mib_body() -> bytes:
    """As many whole CSV rows as fit in the 6 MiB request limit."""
    limit = 6 * 1024 * 1024
    estimate = limit // (len(csv_rows(200)) // 200) + 2000
    body = csv_rows(estimate, seed=11)[:limit]
    return body[: body.rfind(b"\n")]


def wrk(port: int, body: bytes, connections: int, seconds: int, script_dir: Path) -> dict[str, float]:
    script = script_dir / f"body-{len(body)}.lua"
    if not script.exists():
        script.write_text(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "text/csv"\nwrk.body = [==[{body.decode()}]==]\n'
        )
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/invocations",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {p: float(v) * scale[u] for p, v, u in LATENCY.findall(result.stdout)}
    return {"rps": rate, "p50": latency["50"], "p99": latency["99"], "errors": float(errors[1]) if errors else 0.0}


def start_floor(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    (folder / "constant_app.py").write_text(CONSTANT_APP)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "constant_app:app",
            "--port",
            str(port),
            "--workers",
            "2",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
            "--no-server-header",
            "--no-date-header",
            "--app-dir",
            str(folder),
        ],
    )
    wait_for_ping(port, process, timeout=30)  # the constant app answers every path
    return process, port


def timed_request(port: int, body: bytes) -> tuple[float, int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
    response = connection.getresponse()
    response.read()
    return time.perf_counter() - started, response.status


def in_process_costs(model_dir: Path) -> dict[str, float]:
    """Microseconds per call of XGBoost's own predict and of the server's fast path, one row."""
    model = inference.model_fn(model_dir)
    model.build_fast_path()
    body = csv_rows(1)
    row = inference.input_fn(body, "text/csv", model)

    def per_call(run: object, calls: int = 3000) -> float:
        run()  # type: ignore[operator]
        started = time.perf_counter()
        for _ in range(calls):
            run()  # type: ignore[operator]
        return (time.perf_counter() - started) / calls * 1e6

    return {
        "xgboost inplace_predict": per_call(lambda: model.booster.inplace_predict(row)),
        "server fast path (ONNX Runtime)": per_call(lambda: model.predict(row)),
        "whole handler (parse, predict, encode)": per_call(
            lambda: inference.handle(body, "text/csv", None, model, "text/csv")
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: sudo apt-get install wrk (Debian/Ubuntu)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        model_dir = folder / "model"
        model_dir.mkdir()
        train_model(model_dir)
        bodies = {"1 row": csv_rows(1), "100 rows": csv_rows(100), "1,000 rows": csv_rows(1000)}
        cases = [("1 row", 1), ("1 row", 4), ("1 row", 16), ("100 rows", 8), ("1,000 rows", 4)]
        results: dict[tuple[str, str, int], list[dict[str, float]]] = {}

        floor, floor_port = start_floor(folder)
        try:
            with running_server(model_dir, workers=2) as server:
                time.sleep(3)  # let both workers finish building the ONNX fast path
                for repeat in range(args.repeats):
                    order = [("ours", server.port), ("floor", floor_port)]
                    for name, port in order if repeat % 2 == 0 else reversed(order):
                        for label, connections in cases if name == "ours" else [("1 row", 4)]:
                            result = wrk(port, bodies[label], connections, args.seconds, folder)
                            results.setdefault((name, label, connections), []).append(result)
                big = six_mib_body()
                big_rows = big.count(b"\n") + 1
                for _ in range(2):  # once per worker: steady state, not the first request
                    timed_request(server.port, big)
                big_times = []
                for _ in range(args.repeats):
                    seconds, status = timed_request(server.port, big)
                    assert status == 200, status
                    big_times.append(seconds)
        finally:
            floor.terminate()
            floor.wait()

        cold = []
        for _ in range(args.repeats):
            with running_server(model_dir, workers=2) as server:
                cold.append(server.startup_seconds)
        costs = in_process_costs(model_dir)

    def median(name: str, label: str, connections: int, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, label, connections)])

    print(
        f"\nServing benchmark: 200 trees, depth 6, 2 workers, wrk -t1, loopback, median of {args.repeats} x {args.seconds} s"
    )
    print(f"{'Body':<12} {'conc.':>5} {'req/s':>9} {'rows/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for label, connections in cases:
        rows = {"1 row": 1, "100 rows": 100, "1,000 rows": 1000}[label]
        rps = median("ours", label, connections, "rps")
        print(
            f"{label:<12} {connections:>5} {rps:>9.0f} {rps * rows:>10.0f} {median('ours', label, connections, 'p50'):>8.2f} "
            f"{median('ours', label, connections, 'p99'):>8.2f} {median('ours', label, connections, 'errors'):>8.0f}"
        )
    floor_rps = median("floor", "1 row", 4, "rps")
    ours_rps = median("ours", "1 row", 4, "rps")
    print(
        f"floor (constant answer, same stack), 1 row, conc. 4: {floor_rps:.0f} req/s, p99 {median('floor', '1 row', 4, 'p99'):.2f} ms"
    )
    print(f"  floor / ours at 1 row, conc. 4: {floor_rps / ours_rps:.2f}x (target <= 1.5x)")
    print(f"6 MiB CSV ({big_rows:,} rows, {len(big):,} bytes): median {statistics.median(big_times):.3f} s")
    print(f"cold start to the first /ping 200: median {statistics.median(cold):.2f} s (max {max(cold):.2f} s)")
    print("in-process cost per call, one row: " + ", ".join(f"{name} {value:.1f} us" for name, value in costs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
