"""Workers share keep-alive connections: the decision, the workers' messages, and the real server."""

from __future__ import annotations

import asyncio
import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import balance
from benchmarks.serving_benchmark import connections_per_process, descendants
from scripts.local_serving import SERVE, free_port, wait_for_ping
from scripts.local_serving import serve_environment as environment

ROW = b"12,70.5,845.2,1,2,0,2,1,1,0"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_sheds_connections_until_it_holds_at_most_one_more() -> None:
    clock = Clock()
    worker = balance.Balancer(clock=clock)
    worker.peer_count(1, 0)
    here, moved = ["a", "b", "c", "d"], []
    for _ in range(20):  # four keep-alive connections on this worker, each sending a request in turn
        for connection in list(here):
            clock.now += 0.01
            if worker.note(connection)[0]:  # closed: the client reconnects, to the other worker
                here.remove(connection)
                moved.append(connection)
                worker.peer_count(1, len(moved))  # which then reports its count
    assert len(moved) == 2  # 4:0 became 2:2, and then nothing moved
    assert worker.count == 2
    assert worker.closed == 2


def test_a_passing_imbalance_moves_nothing() -> None:
    clock = Clock()
    worker = balance.Balancer(clock=clock)
    worker.peer_count(1, 0)
    for _ in range(5):  # three connections busy for less than PERSIST_SECONDS, then one goes quiet
        for connection in ("a", "b", "c"):
            clock.now += balance.PERSIST_SECONDS / 20
            assert not worker.note(connection)[0]
    clock.now += balance.WINDOW_SECONDS
    worker.note("a")
    worker.prune()
    clock.now += balance.PERSIST_SECONDS
    assert not worker.note("a")[0]  # one active connection against none: even enough


def test_counts_one_apart_are_left_alone() -> None:
    clock = Clock()
    worker = balance.Balancer(clock=clock)
    worker.peer_count(1, 2)
    worker.peer_count(2, 3)
    decisions = [worker.note(c)[0] for c in ("a", "b", "c")]
    assert decisions == [False, False, False]  # 3 here against 2 and 3 elsewhere


def test_without_live_peers_nothing_moves() -> None:
    clock = Clock()
    worker = balance.Balancer(clock=clock)
    assert not any(worker.note(c)[0] for c in "abcdef")  # no other worker has reported
    worker.peer_count(1, 0)
    clock.now += balance.PEER_TIMEOUT_SECONDS + 0.1  # it went quiet: busy or gone
    assert not worker.note("g")[0]


def test_idle_connections_stop_counting() -> None:
    clock = Clock()
    worker = balance.Balancer(clock=clock)
    assert worker.note("a") == (False, True)  # a new connection changes the count ...
    assert worker.note("a") == (False, False)  # ... a further request on it does not
    worker.note("b")
    clock.now += balance.WINDOW_SECONDS / 2
    worker.note("b")
    clock.now += balance.WINDOW_SECONDS * 0.75
    worker.prune()
    assert worker.count == 1  # "a" has been quiet for longer than the window, "b" has not


def test_workers_tell_each_other_their_counts() -> None:
    async def exchange() -> tuple[int, int, dict[int, tuple[int, float]]]:
        loop = asyncio.get_running_loop()
        links = [balance.WorkerLink(balance.Balancer(), port=free_port(), workers=2, parent=os.getpid())]
        links.append(balance.WorkerLink(balance.Balancer(), port=links[0]._port, workers=2, parent=os.getpid()))
        for link in links:
            link.start(loop)
        try:
            for connection in ("a", "b", "c"):
                links[0].note(connection)
            await asyncio.sleep(0.05)
            return links[0].slot, links[1].slot, dict(links[1].balancer._peers)
        finally:
            for link in links:
                link.stop()

    first, second, heard = asyncio.run(exchange())
    assert {first, second} == {0, 1}  # each claimed a slot of its own
    assert heard[first][0] == 3


@pytest.mark.slow
def test_four_keep_alive_connections_end_two_per_worker(serving_model_dir: Path) -> None:
    """Requests in turn on four connections (reopened when the server closes one): whatever the
    kernel's first split, each worker ends with two, and every answer is a complete 200."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVE), "serve"], env=environment(serving_model_dir, port, 2), stderr=subprocess.PIPE
    )
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
    try:
        wait_for_ping(port, process)
        workers = [pid for pid in descendants(process.pid)[1:] if b"resource_tracker" not in _cmdline(pid)]
        assert len(workers) == 2
        turn, deadline = 0, time.monotonic() + 30  # a bound for a slow machine, not a speed check
        while time.monotonic() < deadline:
            turn += 1
            for connection in connections:
                connection.request("POST", "/invocations", ROW, {"Content-Type": "text/csv"})
                response = connection.getresponse()
                assert response.status == 200
                assert 0 < float(response.read()) < 1
                if response.getheader("connection") == "close":
                    connection.close()  # the next request opens a new connection
            if turn >= 20 and sorted(connections_per_process(port, workers).values()) == [2, 2]:
                break
        assert sorted(connections_per_process(port, workers).values()) == [2, 2]
    finally:
        for connection in connections:
            connection.close()
        process.terminate()
        process.wait(timeout=30)


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_the_server_asks_for_a_new_connection_when_told_to(serving_model_dir: Path) -> None:
    import server

    class Link:
        def __init__(self, answer: bool) -> None:
            self.answer = answer
            self.seen: list[object] = []

        def note(self, connection: object) -> bool:
            self.seen.append(connection)
            return self.answer

    async def call(method: str, path: str, body: bytes, client: tuple[str, int] | None) -> dict[bytes, bytes]:
        headers = [(b"content-type", b"text/csv"), (b"content-length", str(len(body)).encode())]
        scope = {"type": "http", "method": method, "path": path, "client": client, "headers": headers}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await server.app(scope, receive, send)
        assert sent[0]["status"] == 200
        return {bytes(k): bytes(v) for k, v in sent[0]["headers"]}  # type: ignore[attr-defined]

    loaded, link = server._state["model"], server._state["link"]
    try:
        server._state["model"] = loaded or server.load(serving_model_dir, fast_path=False)
        for answer in (True, False):
            server._state["link"] = stub = Link(answer)
            for method, path, body in (("POST", "/invocations", ROW), ("GET", "/ping", b"")):
                headers = asyncio.run(call(method, path, body, ("10.0.0.7", 40000)))
                assert (headers.get(b"connection") == b"close") is answer
                assert b"connection" not in asyncio.run(call(method, path, body, None))  # a Unix socket: no peer
            assert stub.seen == [("10.0.0.7", 40000)] * 2
    finally:
        server._state["model"], server._state["link"] = loaded, link


def test_spare_cores_are_those_the_rest_of_the_machine_left_idle() -> None:
    clock, machine, own = Clock(), [0.0], [0.0]
    cores = balance.SpareCores(4, machine=lambda: machine[0], own=lambda: own[0], clock=clock)
    assert cores() == 3  # nothing measured yet
    cores.sample()
    for busy_elsewhere, spare in ((0.1, 3), (1.0, 2), (2.4, 1), (2.6, 0), (3.5, 0)):
        clock.now += 1.0
        own[0] += 1.0  # this worker kept one core busy ...
        machine[0] += 1.0 + busy_elsewhere  # ... and the others this much
        cores.sample()
        assert cores() == spare, busy_elsewhere
    unknown = balance.SpareCores(2, machine=lambda: None)
    unknown.sample()
    assert unknown() == 1  # no /proc/stat: assume the other core is free


def test_a_batch_gets_no_more_threads_than_idle_cores(serving_model_dir: Path) -> None:
    import inference

    spare = [1]
    model = inference.model_fn(serving_model_dir, threads=4, rows_per_thread=100)
    model.spare_cores = lambda: spare[0]
    assert [model.threads_for(rows) for rows in (99, 250, 1000)] == [1, 2, 2]
    spare[0] = 3
    assert [model.threads_for(rows) for rows in (99, 250, 1000)] == [1, 2, 4]
    spare[0] = 0
    assert model.threads_for(1000) == 1
