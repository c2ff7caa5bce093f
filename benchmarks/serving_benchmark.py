"""Serving benchmark: the inference server, side by side with AWS's official XGBoost serving stack.

Prints figures; it asserts nothing (speed is not a test). Needs `wrk` (Debian package `wrk`).

    .venv/bin/python -m benchmarks.serving_benchmark                      # ours only
    .venv/bin/python -m benchmarks.serving_benchmark \\
        --official-src SCRATCH/smxgb/src --official-python SCRATCH/venv-official/bin/python \\
        --nginx-template SCRATCH/nginx.conf.template                      # and the official stack

What it prints, in one run:

1. Load sharing: five rounds at one row, 4 keep-alive connections, against ours as shipped and
   against ours with rebalancing off; per round the requests per second and each worker's share
   of the server's CPU time; the slowest round over the fastest (goal: at least 0.9).
2. Side by side: the same loads against both servers in alternating runs (median of the runs):
   requests per second and the servers' CPU milliseconds per request (all their processes, nginx
   included). The CPU figure moves less than req/s when other work shares the machine.
3. A 6 MiB CSV request against single-threaded in-process XGBoost prediction of the same rows,
   alternated, as the median of the pairs' ratios (goal: at most 1.0); the official stack's time.
4. The floor (the same HTTP stack answering a constant), cold start, in-process costs per call.
5. Threads by batch size: the handler with one thread against two, wall time and CPU time, for
   the evidence behind ML_PLATFORM_SERVING_ROWS_PER_THREAD's default.

The official stack (not on PyPI, never committed here) runs as its Docker image's `serve` does:
nginx on loopback, a Unix socket, then `gunicorn -k gevent -w 2` over the
`sagemaker_xgboost_container.serving:main` app of aws/sagemaker-xgboost-container. Set it up in a
scratch folder outside the repository (the README's Speed section has the recipe): the
snapshot's `src/` (`--official-src`), a Python 3.11 venv with xgboost 3.2.0, Flask 3.1.3,
gunicorn 25.3.0, gevent 26.4.0, protobuf 3.20.3 and sagemaker-containers 2.8.6.post2
(`--official-python`), and `etc/nginx.conf.template` of aws/sagemaker-containers
(`--nginx-template`). Without them the benchmark measures ours alone and says so.

Same setup for every server: a 200-tree, depth-6 model on the schema's ten features, 2 worker
processes, loopback, `wrk -t1` on the same cores, one request body per run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "training_code"), str(ROOT / "inference_code")]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import xgboost as xgb

import inference
import serving_env
from balance import SAMPLE_SECONDS, machine_busy_seconds
from churn_data import generate_customers
from feature_schema import load_schema
from scripts.local_serving import SERVE, ServerFailedError, free_port, serve_environment, wait_for_ping

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
ROWS = {"1 row": 1, "100 rows": 100, "1,000 rows": 1000}
CASES = [("1 row", 1), ("1 row", 4), ("1 row", 16), ("100 rows", 8), ("1,000 rows", 4)]
CROSSOVER_ROWS = (1_000, 2_048, 4_096, 8_192, 16_384, 65_536)
ROUND_GOAL = 0.9  # the slowest of five rounds over the fastest, one row at concurrency 4
BIG_GOAL = 1.0  # a 6 MiB request over single-threaded XGBoost prediction of its rows
THOUSAND_GOAL = 4.0  # 1,000-row requests per second, ours over the official stack's


# --- model and bodies -------------------------------------------------------------------------------


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
    limit = serving_env.MAX_REQUEST_BYTES
    estimate = limit // (len(csv_rows(200)) // 200) + 2000
    body = csv_rows(estimate, seed=11)[:limit]
    return body[: body.rfind(b"\n")]


# --- processes ----------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux /proc)."""
    found = [pid]
    for child in _children(pid):
        found.extend(descendants(child))
    return found


def _children(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                children.extend(int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return children


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """User plus system CPU seconds of each process so far (0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            used[pid] = 0.0
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    return used


def resident_bytes(pids: Sequence[int]) -> int:
    """The sum of the processes' resident set sizes (VmRSS)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def connections_per_process(port: int, pids: Sequence[int]) -> dict[int, int]:
    """Established TCP connections to ``port`` held by each process (Linux /proc)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    established.add(fields[9])
    counts = {}
    for pid in pids:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        counts[pid] = len(inodes & established)
    return counts


@dataclass
class Server:
    """A server under test: where it listens and which processes are its own."""

    name: str
    port: int
    roots: list[int]  # the processes it was started as; their descendants are its processes too
    startup_seconds: float = 0.0
    workers: list[int] = field(default_factory=list)  # the processes that score, for the load split

    def processes(self) -> list[int]:
        return [pid for root in self.roots for pid in descendants(root)]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def our_server(
    model_dir: Path, log_dir: Path, *, workers: int = 2, environment: dict[str, str] | None = None, name: str = "ours"
) -> Iterator[Server]:
    """``inference_code/serve`` as SageMaker runs it, on a free port, ready when the block starts."""
    port = free_port()
    log = (log_dir / f"{name}-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(SERVE), "serve"],
        env={**serve_environment(model_dir, port, workers), **(environment or {})},
        stderr=log,
    )
    try:
        try:
            startup = wait_for_ping(port, process, timeout=60)
        except ServerFailedError as error:
            raise ServerFailedError(f"{error} {(log_dir / log.name).read_text()[-2000:]}") from None
        server = Server(name, port, [process.pid], startup)
        server.workers = [pid for pid in descendants(process.pid)[1:] if _is_worker(pid)]
        yield server
    finally:
        _stop(process)
        log.close()


def _is_worker(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


@dataclass(frozen=True)
class OfficialStack:
    """Where the official serving code was set up (outside this repository)."""

    source: Path  # src/ of aws/sagemaker-xgboost-container
    python: Path  # a venv interpreter with the image's pins
    nginx_template: Path  # etc/nginx.conf.template of aws/sagemaker-containers

    def missing(self) -> list[str]:
        missing = [f"{p} is not there" for p in (self.source, self.python, self.nginx_template) if not p.exists()]
        if nginx_binary() is None:
            missing.append("nginx is not installed (Debian package nginx-light)")
        return missing


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


@contextlib.contextmanager
def official_server(stack: OfficialStack, model_dir: Path, *, workers: int = 2) -> Iterator[Server]:
    """nginx -> Unix socket -> gunicorn (gevent) -> the official Flask app, as the image's `serve`
    starts them, but on a loopback port with every path in a folder of its own."""
    folder = Path(tempfile.mkdtemp(prefix="official-serving-"))
    folder.chmod(0o755)  # nginx's workers run as nobody when started as root: they need the socket
    for sub in ("base", "run"):
        (folder / sub).mkdir()
    port = free_port()
    sock = folder / "gunicorn.sock"
    environment = {
        **os.environ,
        "SM_MODEL_DIR": str(model_dir),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(stack.source),
        "SAGEMAKER_BASE_DIR": str(folder / "base"),  # else two workers race to create ~/sagemaker_local
        "XDG_RUNTIME_DIR": str(folder / "run"),  # gunicorn 25's control socket
    }
    command = [str(stack.python), "-m", "gunicorn", "--timeout", "60", "-k", "gevent", "-b", f"unix:{sock}"]
    command += ["--worker-connections", str(1000 * workers), "-w", str(workers), "--log-level", "info"]
    command.append("sagemaker_xgboost_container.serving:main")
    log = (folder / "gunicorn.log").open("wb")
    gunicorn = subprocess.Popen(command, env=environment, stdout=log, stderr=log)
    config = (
        stack.nginx_template.read_text()
        .replace("%NGINX_HTTP_PORT%", f"127.0.0.1:{port}")
        .replace("%NGINX_PROXY_READ_TIMEOUT%", "60")
        .replace("unix:/tmp/gunicorn.sock", f"unix:{sock}")
        .replace("pid /tmp/nginx.pid;", f"pid {folder}/nginx.pid;")
        .replace("http {", f"http {{\n  client_body_temp_path {folder}/body;\n  proxy_temp_path {folder}/proxy;", 1)
    )
    (folder / "nginx.conf").write_text(config)
    nginx_log = (folder / "nginx.log").open("wb")
    nginx = subprocess.Popen(
        [str(nginx_binary()), "-c", str(folder / "nginx.conf")], stdout=subprocess.DEVNULL, stderr=nginx_log
    )
    try:
        try:
            startup = wait_for_ping(port, gunicorn, timeout=120)  # the first /ping loads the model
        except ServerFailedError as error:
            raise ServerFailedError(
                f"official stack: {error} gunicorn: {(folder / 'gunicorn.log').read_text()[-3000:]}"
            ) from None
        server = Server("official", port, [gunicorn.pid, nginx.pid], startup)
        server.workers = descendants(gunicorn.pid)[1:]
        yield server
    finally:
        _stop(nginx)
        _stop(gunicorn)
        log.close()
        nginx_log.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def floor_server(folder: Path) -> Iterator[Server]:
    """uvicorn (httptools, uvloop), 2 workers, answering a constant: the HTTP stack's own cost."""
    (folder / "constant_app.py").write_text(CONSTANT_APP)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "constant_app:app", "--port", str(port), "--workers", "2"]
    command += ["--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
    command += ["--no-server-header", "--no-date-header", "--app-dir", str(folder)]
    process = subprocess.Popen(command)
    try:
        yield Server("floor", port, [process.pid], wait_for_ping(port, process, timeout=30))
    finally:
        _stop(process)


# --- load -----------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run against one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx responses plus socket errors
    cpu_ms_per_request: float
    cpu_shares: list[float]  # each worker's share of the workers' CPU time
    connections: list[int]  # connections per worker, sampled halfway through
    other_cores: float  # cores kept busy by everything but the server and wrk (other people's work)


def wrk(server: Server, body: bytes, connections: int, seconds: float, script_dir: Path) -> Run:
    script = script_dir / f"body-{len(body)}.lua"
    if not script.exists():
        script.write_text(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "text/csv"\nwrk.body = [==[{body.decode()}]==]\n'
        )
    processes = server.processes()
    before = cpu_seconds(processes)
    machine_before, children_before, started = machine_busy_seconds(), _children_cpu(), time.monotonic()
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    load = subprocess.Popen(
        [*command, f"http://127.0.0.1:{server.port}/invocations"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(seconds / 2)
    split = connections_per_process(server.port, server.workers)
    output = load.communicate()[0]
    after = cpu_seconds(processes)
    machine_after, children_after, elapsed = machine_busy_seconds(), _children_cpu(), time.monotonic() - started
    if load.returncode != 0:
        raise RuntimeError(f"wrk failed: {output}")
    requests = int(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non_2xx[1]) if non_2xx else 0
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {p: float(v) * scale[u] for p, v, u in LATENCY.findall(output)}
    used = {pid: after[pid] - before.get(pid, 0.0) for pid in processes}
    worker_cpu = [used.get(pid, 0.0) for pid in server.workers]
    machine = (machine_after or 0.0) - (machine_before or 0.0)
    others = max(0.0, machine - sum(used.values()) - (children_after - children_before)) / elapsed
    return Run(
        rps=rate,
        p50_ms=latency["50"],
        p99_ms=latency["99"],
        errors=errors,
        cpu_ms_per_request=sum(used.values()) * 1000 / max(requests, 1),
        cpu_shares=[c / (sum(worker_cpu) or 1) for c in worker_cpu],
        connections=[split[pid] for pid in server.workers],
        other_cores=others,
    )


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_request(port: int, body: bytes) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        started = time.perf_counter()
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 200:
        raise ServerFailedError(f"port {port}: a 6 MiB request answered {response.status}")
    return elapsed


def quiet_check() -> str:
    """The load average, so a reader can tell a busy machine's figures apart."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


# --- the measurements -----------------------------------------------------------------------------------


def five_rounds(server: Server, body: bytes, seconds: float, folder: Path) -> list[Run]:
    return [wrk(server, body, 4, seconds, folder) for _ in range(5)]


def print_rounds(title: str, runs: list[Run]) -> float:
    rates = [run.rps for run in runs]
    ratio = min(rates) / max(rates)
    print(f"{title}: slowest / fastest = {ratio:.2f}")
    for number, run in enumerate(runs, start=1):
        shares = " / ".join(f"{share:.0%}" for share in run.cpu_shares)
        split = ":".join(str(count) for count in run.connections)
        print(
            f"  round {number}: {run.rps:6.0f} req/s, p99 {run.p99_ms:6.2f} ms, server CPU "
            f"{run.cpu_ms_per_request * 1000:3.0f} us/req, worker CPU {shares}, connections {split}, "
            f"other work {run.other_cores:.2f} cores, errors {run.errors}"
        )
    return ratio


def big_request_ratio(server: Server, model_dir: Path, body: bytes, repeats: int) -> tuple[float, float, float]:
    """(median request seconds, median single-threaded prediction seconds, median of the pairs'
    ratios): the request and XGBoost's own prediction of its rows in this process, alternated."""
    model = inference.model_fn(model_dir)  # one thread, as the official container predicts
    features = inference.input_fn(body, "text/csv", model)
    for _ in range(2):  # steady state: every worker has parsed a large body once
        timed_request(server.port, body)
    requests, predictions = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        model.booster.inplace_predict(features)
        predictions.append(time.perf_counter() - started)
        # The workers give a batch the cores idle over their last samples: let them see this
        # process's prediction end, so each measurement has the machine to itself.
        time.sleep(3 * SAMPLE_SECONDS)
        requests.append(timed_request(server.port, body))
    ratios = [r / p for r, p in zip(requests, predictions, strict=True)]
    return statistics.median(requests), statistics.median(predictions), statistics.median(ratios)


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


def thread_crossover(model_dir: Path, sizes: Sequence[int], repeats: int) -> list[tuple[int, float, float, float]]:
    """Per batch size: (rows, median wall ms on one thread, on two threads, median CPU ratio two /
    one) for the whole handler on a CSV body, in this process, alternated."""
    one = inference.model_fn(model_dir, threads=1)
    two = inference.model_fn(model_dir, threads=2, rows_per_thread=1)  # two threads at any size
    figures = []
    for rows in sizes:
        body = csv_rows(rows, seed=3)
        wall: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        for model in (one, two):
            inference.handle(body, "text/csv", None, model, "text/csv")
        for _ in range(repeats):
            for threads, model in ((1, one), (2, two)):
                started, used = time.perf_counter(), time.process_time()
                inference.handle(body, "text/csv", None, model, "text/csv")
                wall[threads].append(time.perf_counter() - started)
                cpu[threads].append(time.process_time() - used)
        figures.append(
            (
                rows,
                statistics.median(wall[1]) * 1000,
                statistics.median(wall[2]) * 1000,
                statistics.median(cpu[2]) / statistics.median(cpu[1]),
            )
        )
    return figures


def _verdict(value: float, goal: float, *, at_least: bool) -> str:
    met = value >= goal if at_least else value <= goal
    return f"{'met' if met else 'NOT met'} (goal {'>=' if at_least else '<='} {goal:g})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per load (median reported)")
    parser.add_argument("--seconds", type=float, default=6, help="length of one wrk run")
    parser.add_argument("--round-seconds", type=float, default=5, help="length of each of the five rounds")
    parser.add_argument("--official-src", type=Path, help="src/ of an aws/sagemaker-xgboost-container snapshot")
    parser.add_argument("--official-python", type=Path, help="python of a venv with the official stack's pins")
    parser.add_argument("--nginx-template", type=Path, help="etc/nginx.conf.template of aws/sagemaker-containers")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: sudo apt-get install wrk (Debian/Ubuntu)", file=sys.stderr)
        return 2
    official: OfficialStack | None = None
    given = [args.official_src, args.official_python, args.nginx_template]
    if any(given):
        if not all(given):
            parser.error("the official stack needs --official-src, --official-python and --nginx-template")
        official = OfficialStack(args.official_src, args.official_python, args.nginx_template)
        if problems := official.missing():
            parser.error("official stack: " + "; ".join(problems))

    print(f"Serving benchmark ({quiet_check()})")
    print(
        f"settings: 2 workers; a batch gets one scoring thread per {serving_env.rows_per_thread():,} rows, "
        f"up to {serving_env.scoring_threads()} (ML_PLATFORM_SERVING_ROWS_PER_THREAD, ML_PLATFORM_SERVING_THREADS)"
    )
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        model_dir = folder / "model"
        model_dir.mkdir()
        train_model(model_dir)
        bodies = {label: csv_rows(rows) for label, rows in ROWS.items()}
        big = six_mib_body()
        big_rows = big.count(b"\n") + 1

        # 1. Load sharing, with and without rebalancing (each server alone on the machine).
        with our_server(model_dir, folder) as ours:
            time.sleep(2)  # the workers finish building the ONNX fast path
            wrk(ours, bodies["1 row"], 4, 2, folder)  # warm-up
            balanced = five_rounds(ours, bodies["1 row"], args.round_seconds, folder)
        environment = {"ML_PLATFORM_SERVING_REBALANCE": "false"}
        with our_server(model_dir, folder, environment=environment, name="unbalanced") as unbalanced_server:
            time.sleep(2)
            wrk(unbalanced_server, bodies["1 row"], 4, 2, folder)
            unbalanced = five_rounds(unbalanced_server, bodies["1 row"], args.round_seconds, folder)
        print(f"\n1. Five rounds of {args.round_seconds:g} s, one row, 4 keep-alive connections, wrk -t1")
        round_ratio = print_rounds("ours as shipped", balanced)
        print_rounds("ours with ML_PLATFORM_SERVING_REBALANCE=false (the kernel's split only)", unbalanced)

        # 2. Side by side, alternating; 3. the 6 MiB request.
        results: dict[tuple[str, str, int], list[Run]] = {}
        big_times: dict[str, list[float]] = {}
        with contextlib.ExitStack() as stack:
            ours = stack.enter_context(our_server(model_dir, folder))
            servers = [ours]
            if official is not None:
                try:
                    servers.append(stack.enter_context(official_server(official, model_dir)))
                except ServerFailedError as error:  # its gunicorn once failed to boot a worker (exit 3)
                    print(f"official stack failed to start, trying once more: {str(error)[:300]}", file=sys.stderr)
                    servers.append(stack.enter_context(official_server(official, model_dir)))
            floor = stack.enter_context(floor_server(folder))
            time.sleep(2)
            for server in servers:
                wrk(server, bodies["1 row"], 4, 2, folder)  # warm-up
            for repeat in range(args.repeats):
                order = servers if repeat % 2 == 0 else servers[::-1]
                for label, connections in CASES:
                    for server in order:
                        result = wrk(server, bodies[label], connections, args.seconds, folder)
                        results.setdefault((server.name, label, connections), []).append(result)
                results.setdefault(("floor", "1 row", 4), []).append(
                    wrk(floor, bodies["1 row"], 4, args.seconds, folder)
                )
            big_request, big_predict, big_ratio = big_request_ratio(ours, model_dir, big, max(5, args.repeats))
            if official is not None:
                official_server_ = servers[1]
                timed_request(official_server_.port, big)
                big_times["official"] = [timed_request(official_server_.port, big) for _ in range(args.repeats)]

        cold = []
        for _ in range(args.repeats):
            with our_server(model_dir, folder, name="cold") as server:
                cold.append(server.startup_seconds)
        costs = in_process_costs(model_dir)
        machine_before, own_before, started = machine_busy_seconds(), time.process_time(), time.monotonic()
        crossover = thread_crossover(model_dir, CROSSOVER_ROWS, max(9, 3 * args.repeats))
        crossover_others = max(
            0.0, (machine_busy_seconds() or 0.0) - (machine_before or 0.0) - (time.process_time() - own_before)
        ) / (time.monotonic() - started)

    def median(name: str, label: str, connections: int, key: str) -> float:
        return float(statistics.median(getattr(r, key) for r in results[(name, label, connections)]))

    names = [server.name for server in servers]
    print(f"\n2. Side by side: median of {args.repeats} alternating runs of {args.seconds:g} s, wrk -t1, loopback")
    if official is None:
        print("   official stack: NOT measured (pass --official-src, --official-python and --nginx-template)")
    header = f"{'Body':<11} {'conc.':>5}"
    for name in names:
        header += f" | {name + ' req/s':>15} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} {'non-2xx':>7}"
    if official is not None:
        header += f" | {'req/s ratio':>11} {'CPU ratio':>9}"
    print(header)
    for label, connections in CASES:
        line = f"{label:<11} {connections:>5}"
        for name in names:
            line += (
                f" | {median(name, label, connections, 'rps'):>15.0f} {median(name, label, connections, 'p50_ms'):>7.2f}"
                f" {median(name, label, connections, 'p99_ms'):>7.2f}"
                f" {median(name, label, connections, 'cpu_ms_per_request'):>10.3f}"
                f" {median(name, label, connections, 'errors'):>7.0f}"
            )
        if official is not None:
            rps_ratio = median("ours", label, connections, "rps") / median("official", label, connections, "rps")
            cpu_ratio = median("official", label, connections, "cpu_ms_per_request") / median(
                "ours", label, connections, "cpu_ms_per_request"
            )
            line += f" | {rps_ratio:>10.1f}x {cpu_ratio:>8.1f}x"
        print(line)
    others = [run.other_cores for runs in results.values() for run in runs]
    print(f"other people's work during these runs: median {statistics.median(others):.2f} cores, max {max(others):.2f}")
    floor_rps = median("floor", "1 row", 4, "rps")
    print(
        f"floor (constant answer, same HTTP stack), 1 row, conc. 4: {floor_rps:.0f} req/s, "
        f"{floor_rps / median('ours', '1 row', 4, 'rps'):.2f}x ours"
    )

    print(f"\n3. One 6 MiB CSV request ({big_rows:,} rows, {len(big):,} bytes), alternated with in-process prediction")
    print(
        f"   ours: {big_request:.3f} s; single-threaded XGBoost inplace_predict of the same rows: {big_predict:.3f} s"
    )
    print(f"   request / prediction: {big_ratio:.2f} (median of the pairs)")
    if official is not None:
        print(f"   official: {statistics.median(big_times['official']):.3f} s")

    print("\n4. Other figures")
    print(f"cold start to the first /ping 200: median {statistics.median(cold):.2f} s (max {max(cold):.2f} s)")
    print("in-process cost per call, one row: " + ", ".join(f"{name} {value:.1f} us" for name, value in costs.items()))

    print(
        f"\n5. Threads by batch size: the whole handler on a CSV body in this process, one thread against two "
        f"(median of {max(9, 3 * args.repeats)}, alternated; other people's work {crossover_others:.2f} cores)"
    )
    print(f"{'rows':>7} {'1 thread ms':>12} {'2 threads ms':>13} {'time 2/1':>9} {'CPU 2/1':>8}")
    for rows, one_ms, two_ms, cpu_ratio in crossover:
        print(f"{rows:>7,} {one_ms:>12.2f} {two_ms:>13.2f} {two_ms / one_ms:>9.2f} {cpu_ratio:>8.2f}")
    print(
        f"   the server splits from {2 * serving_env.rows_per_thread():,} rows, and only onto a core the rest of "
        "the machine leaves idle"
    )

    print(f"\nIssue #12 goals ({quiet_check()}):")
    print(
        f"  five rounds at 1 row, c=4, slowest / fastest: {round_ratio:.2f}, {_verdict(round_ratio, ROUND_GOAL, at_least=True)}"
    )
    print(
        f"  6 MiB request / single-threaded prediction: {big_ratio:.2f}, {_verdict(big_ratio, BIG_GOAL, at_least=False)}"
    )
    if official is not None:
        thousand = median("ours", "1,000 rows", 4, "rps") / median("official", "1,000 rows", 4, "rps")
        print(
            f"  1,000 rows, c=4, ours / official req/s: {thousand:.1f}x, {_verdict(thousand, THOUSAND_GOAL, at_least=True)}"
        )
    else:
        print("  1,000 rows, c=4, ours / official: not measured (no official stack)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
