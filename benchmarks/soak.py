"""Soak test: twice the configured per-instance rate against the local server, paced, for a minute.

A script, not a test: it prints figures and PASS or FAIL, and exits 1 on FAIL.

    .venv/bin/python -m benchmarks.soak                  # 2 x prod's max_rps_per_instance, 60 s
    .venv/bin/python -m benchmarks.soak --rate 1000 --seconds 120

The server is ``inference_code/serve`` with 2 workers and a 200-tree, depth-6 model (as in
benchmarks/serving_benchmark.py). The load is open-loop: request ``i`` is due at ``i / rate``
seconds whatever the server does, so a slow server meets a growing queue instead of a slower
client, and each latency runs from the moment the request was due (no coordinated omission).
Requests go out on a pool of keep-alive connections, as SageMaker's front end sends them: an
idle connection if there is one, else a new one (up to ``--connections``), else the request waits.
Bodies are mixed: mostly one row, some of 10 to 100 rows, a few of 1,000 rows (``PROFILE``).

Criteria: no request fails (status other than 200, a connection error, or no answer in 10 s);
the client held the rate (at least 95 % of it, else the figures say nothing about the server);
the server's resident memory (VmRSS summed over its processes) at the end is within 10 % of what
it was after the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.serving_benchmark import Server, csv_rows, our_server, quiet_check, resident_bytes, train_model
from config import load_config

# (share of requests, smallest and largest row count)
PROFILE = ((0.90, 1, 1), (0.09, 10, 100), (0.01, 1000, 1000))
BODIES_PER_SIZE_CLASS = 20
T = TypeVar("T")
TIMEOUT_SECONDS = 10.0
MEMORY_TOLERANCE = 0.10
RATE_TOLERANCE = 0.95


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    closes: int = 0  # responses that asked for a new connection (the workers moving load)
    opened: int = 0

    def fail(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one server, reused like a front end reuses them."""

    def __init__(self, port: int, limit: int, tally: Tally) -> None:
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(limit)
        self._tally = tally

    async def post(self, body: bytes) -> int:
        """POST one CSV body to /invocations; the response status."""
        async with self._slots:
            if self._idle:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
                self._tally.opened += 1
            try:
                status, keep = await self._exchange(reader, writer, body)
            except BaseException:
                writer.close()
                raise
            if keep:
                self._idle.append((reader, writer))
            else:
                self._tally.closes += 1
                writer.close()
            return status

    @staticmethod
    async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> tuple[int, bool]:
        writer.write(
            b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers.get("connection", "").lower() != "close"

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


def make_bodies(seed: int) -> list[tuple[float, list[bytes]]]:
    """Per size class: its cumulative share and a few bodies of row counts in its range."""
    pick = random.Random(seed)  # noqa: S311  (a reproducible mix, not a secret)
    classes, cumulative = [], 0.0
    for share, low, high in PROFILE:
        cumulative += share
        sizes = [pick.randint(low, high) for _ in range(BODIES_PER_SIZE_CLASS)]
        classes.append((cumulative, [csv_rows(n, seed=seed + i) for i, n in enumerate(sizes)]))
    return classes


def pick_class(classes: list[tuple[float, list[bytes]]], draw: float) -> list[bytes]:
    """The size class a uniform draw in [0, 1) falls in (the last one takes any rounding left)."""
    return next((bodies for cumulative, bodies in classes if draw < cumulative), classes[-1][1])


async def paced_load(port: int, rate: float, seconds: float, connections: int, seed: int) -> tuple[Tally, float]:
    """Requests due every 1/rate s for ``seconds``; (the tally, the rate actually sent)."""
    tally = Tally()
    pool = ConnectionPool(port, connections, tally)
    bodies = make_bodies(seed)
    pick = random.Random(seed)  # noqa: S311  (a reproducible mix, not a secret)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def one(due: float, body: bytes) -> None:
        try:
            status = await asyncio.wait_for(pool.post(body), TIMEOUT_SECONDS)
        except TimeoutError:
            tally.fail(f"no answer in {TIMEOUT_SECONDS:g} s")
            return
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            tally.fail(type(error).__name__)
            return
        tally.latencies_ms.append((loop.time() - due) * 1000)
        if status != 200:
            tally.fail(f"HTTP {status}")

    total = int(rate * seconds)
    started = loop.time()
    for number in range(total):
        due = started + number / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        chosen = pick.choice(pick_class(bodies, pick.random()))
        tally.rows += chosen.count(b"\n") + 1
        task = loop.create_task(one(due, chosen))
        pending.add(task)
        task.add_done_callback(pending.discard)
    sent_rate = total / max(loop.time() - started, 1e-9)
    await asyncio.gather(*pending)
    pool.close()
    return tally, sent_rate


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop (installed with uvicorn) when there is one: a lighter client leaves more CPU to
    the server sharing the machine."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--environment", default="prod", help="whose serving.max_rps_per_instance to double")
    parser.add_argument("--rate", type=float, help="requests per second (default: 2 x max_rps_per_instance)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warm-up", type=float, default=10, help="seconds at the same rate before measuring")
    parser.add_argument("--connections", type=int, default=64, help="most connections the client opens")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    configured = load_config().environment(args.environment).serving.max_rps_per_instance
    rate = args.rate or 2 * configured

    print(f"Soak ({quiet_check()})")
    print(
        f"target {rate:g} req/s (2 x {args.environment}'s max_rps_per_instance {configured:g}) for {args.seconds:g} s "
        f"after {args.warm_up:g} s of warm-up; bodies: "
        + ", ".join(
            f"{share:.0%} of {low}-{high} rows" if low != high else f"{share:.0%} of {low} row(s)"
            for share, low, high in PROFILE
        )
    )
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        model_dir = folder / "model"
        model_dir.mkdir()
        train_model(model_dir)
        with our_server(model_dir, folder) as server:
            time.sleep(2)  # the workers finish their background warm-up
            warm, _ = run_loop(paced_load(server.port, rate, args.warm_up, args.connections, args.seed))
            memory_warm = resident_bytes(server.processes())
            tally, sent = run_loop(paced_load(server.port, rate, args.seconds, args.connections, args.seed + 1))
            memory_end = resident_bytes(server.processes())
            report_processes(server)
    return report(rate, sent, warm, tally, memory_warm, memory_end)


def report_processes(server: Server) -> None:
    print(f"server processes: {len(server.processes())} (serve, {len(server.workers)} workers, helpers)")


def report(rate: float, sent: float, warm: Tally, tally: Tally, memory_warm: int, memory_end: int) -> int:
    errors = sum(warm.errors.values()) + sum(tally.errors.values())
    reasons = {**warm.errors}
    for reason, count in tally.errors.items():
        reasons[reason] = reasons.get(reason, 0) + count
    latencies = tally.latencies_ms or [float("nan")]
    growth = memory_end / memory_warm - 1
    print(
        f"sent {sent:.1f} req/s ({len(tally.latencies_ms) + sum(tally.errors.values())} requests, {tally.rows:,} rows)"
    )
    print(
        f"latency from the due time: p50 {statistics.median(latencies):.2f} ms, p90 {percentile(latencies, 0.90):.2f} ms, "
        f"p99 {percentile(latencies, 0.99):.2f} ms, max {max(latencies):.2f} ms"
    )
    print(f"connections opened {tally.opened}, closed by the server to move load {tally.closes}")
    print(f"errors: {errors}" + (f" ({', '.join(f'{r}: {n}' for r, n in reasons.items())})" if reasons else ""))
    print(
        f"server resident memory: {memory_warm / 2**20:.1f} MiB after warm-up, {memory_end / 2**20:.1f} MiB at the end "
        f"({growth:+.1%})"
    )
    checks = {
        "no errors": errors == 0,
        f"rate held (>= {RATE_TOLERANCE:.0%} of {rate:g} req/s)": sent >= RATE_TOLERANCE * rate,
        f"memory within {MEMORY_TOLERANCE:.0%} of the warm-up's": abs(growth) <= MEMORY_TOLERANCE,
    }
    for name, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {name}")
    passed = all(checks.values())
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
