"""Sharing the machine between the workers: keep-alive connections spread evenly over them, and
the cores a large batch may borrow.

Connections. The workers share one listening socket, so the kernel decides which worker accepts
a connection, and a client that keeps its connections open (SageMaker's front end, a load
generator) can leave three of four on one worker while the other idles. Each worker therefore
counts its *active* connections (those that carried a request in the last ``window`` seconds)
and tells the other workers its count. A worker that has had two or more active connections above
the least loaded worker for a quarter of a second answers one request with ``Connection: close``;
the client opens a new connection, which the worker with room accepts first (the busy one is
still scoring). No request is refused or retried: the response is complete, the header only asks
the client not to reuse the connection. With ``n`` connections the counts end up at most one
apart, so four connections on two workers are 2:2. Counts travel as small datagrams between Unix
sockets in Linux's abstract namespace (no files, gone with the process), one per worker, named
after the parent process and the port.

Cores. A batch split over threads is faster only when a core is idle: when the other workers
(or anything else) keep every core busy, the extra thread only takes turns with them and costs
3-14 % more CPU (measured, README Speed). :class:`SpareCores` samples ``/proc/stat`` a few times a
second and subtracts this process's own CPU time, so each worker knows how many cores the rest of
the machine left idle lately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Hashable
from pathlib import Path

LOG = logging.getLogger("balance")

WINDOW_SECONDS = 0.5  # a connection without a request for this long no longer counts as active
HEARTBEAT_SECONDS = WINDOW_SECONDS / 4  # each worker's count reaches the others at least this often
PEER_TIMEOUT_SECONDS = 3 * HEARTBEAT_SECONDS + 1.0  # a worker silent this long (busy or gone) is left out
COOLDOWN_SECONDS = 0.02  # at most one connection closed per this interval, while the client reconnects
# An imbalance must last this long before a connection moves: a client that reuses its most recent
# connection first shifts load between connections all the time, and chasing that costs reconnects.
PERSIST_SECONDS = 0.25
SURPLUS = 2  # close a connection when this many more are active here than on the least loaded worker


class Balancer:
    """The decision, without sockets: which request should close its connection.

    ``note`` is called for every request with the connection's identity (the client address and
    port); ``peer_count`` whenever another worker reports its count; ``prune`` on the heartbeat.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, window: float = WINDOW_SECONDS) -> None:
        self._clock = clock
        self._window = window
        self._active: dict[Hashable, float] = {}  # connection -> time of its last request
        self._peers: dict[int, tuple[int, float]] = {}  # worker slot -> (active count, when heard)
        self._next_close = 0.0
        self._uneven_since: float | None = None
        self.closed = 0  # connections closed to move load, for the record

    @property
    def count(self) -> int:
        return len(self._active)

    def note(self, connection: Hashable) -> tuple[bool, bool]:
        """Record a request on ``connection``: (whether to close it after this response, whether the
        count changed and should be published)."""
        now = self._clock()
        changed = connection not in self._active
        self._active[connection] = now
        least = self._least_loaded_peer(now)
        if least is None or now < self._next_close:
            return False, changed
        slot, peer_count = least
        if len(self._active) - peer_count < SURPLUS:
            self._uneven_since = None
            return False, changed
        if self._uneven_since is None:
            self._uneven_since = now
        if now - self._uneven_since < PERSIST_SECONDS:
            return False, changed
        del self._active[connection]
        # Until that worker reports again, assume the connection lands there (so one burst of
        # requests does not close more connections than the imbalance needs).
        self._peers[slot] = (peer_count + 1, self._peers[slot][1])
        self._next_close = now + COOLDOWN_SECONDS
        self.closed += 1
        return True, True

    def peer_count(self, slot: int, count: int) -> None:
        self._peers[slot] = (count, self._clock())

    def prune(self) -> None:
        """Forget connections idle for longer than the window (closed or quiet)."""
        horizon = self._clock() - self._window
        for connection in [c for c, last in self._active.items() if last < horizon]:
            del self._active[connection]

    def _least_loaded_peer(self, now: float) -> tuple[int, int] | None:
        live = [(count, slot) for slot, (count, heard) in self._peers.items() if now - heard <= PEER_TIMEOUT_SECONDS]
        if not live:
            return None
        count, slot = min(live)
        return slot, count


def socket_name(slot: int, *, port: int, parent: int) -> bytes:
    """The abstract-namespace address of one worker's socket (a leading NUL: no file is created)."""
    return f"\0ml-platform-serving.{parent}.{port}.{slot}".encode()


class WorkerLink:
    """One worker's end: claims a free slot, publishes its count, listens to the others' counts."""

    def __init__(self, balancer: Balancer, *, port: int, workers: int, parent: int | None = None) -> None:
        self.balancer = balancer
        self._port = port
        self._parent = os.getppid() if parent is None else parent
        # Slots beyond the worker count leave room for a replacement starting before its
        # predecessor's socket is gone.
        self._slots = range(2 * workers)
        self.slot = -1
        self._socket: socket.socket | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        for slot in self._slots:
            try:
                sock.bind(socket_name(slot, port=self._port, parent=self._parent))
            except OSError:
                continue  # taken by another worker
            self.slot = slot
            break
        else:
            sock.close()
            LOG.warning("no free balancing slot; this worker serves without moving connections")
            return
        self._socket = sock
        self._loop = loop
        loop.add_reader(sock.fileno(), self._receive)
        self._beat()

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._socket is not None and self._loop is not None:
            self._loop.remove_reader(self._socket.fileno())
            self._socket.close()
        self._socket = None

    def note(self, connection: Hashable) -> bool:
        """Record a request; True if its response should close the connection."""
        close, changed = self.balancer.note(connection)
        if changed:
            self.publish()
        return close

    def publish(self) -> None:
        if self._socket is None:
            return
        message = f"{self.slot} {self.balancer.count}".encode()
        for slot in self._slots:
            if slot == self.slot:
                continue
            # Absent slot, a full queue or a worker on its way out: the next heartbeat repeats it.
            with contextlib.suppress(OSError):
                self._socket.sendto(message, socket_name(slot, port=self._port, parent=self._parent))

    def _receive(self) -> None:
        assert self._socket is not None
        while True:
            try:
                message = self._socket.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            try:
                slot, count = (int(part) for part in message.split())
            except ValueError:
                continue  # not from a worker of this server
            self.balancer.peer_count(slot, count)

    def _beat(self) -> None:
        self.balancer.prune()
        self.publish()
        assert self._loop is not None
        self._heartbeat = self._loop.call_later(HEARTBEAT_SECONDS, self._beat)


SAMPLE_SECONDS = 0.25  # how often a worker looks at the machine's CPU time


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (Linux /proc/stat), None elsewhere."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is already in user time


def own_busy_seconds() -> float:
    times = os.times()
    return times.user + times.system


class SpareCores:
    """How many cores the rest of the machine left idle over the last sample interval.

    ``spare`` starts at ``cores - 1`` (nothing measured yet: assume idle) and is updated by
    ``sample``; on a system without /proc/stat it stays there.
    """

    def __init__(
        self,
        cores: int | None = None,
        *,
        machine: Callable[[], float | None] = machine_busy_seconds,
        own: Callable[[], float] = own_busy_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cores = cores or os.cpu_count() or 1
        self.spare = self.cores - 1
        self._machine, self._own, self._clock = machine, own, clock
        self._last: tuple[float, float, float] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self) -> int:
        return self.spare

    def sample(self) -> None:
        machine = self._machine()
        if machine is None:
            return
        now, own = self._clock(), self._own()
        if self._last is not None and now > self._last[0]:
            then, machine_then, own_then = self._last
            others = max(0.0, (machine - machine_then) - (own - own_then)) / (now - then)  # in cores
            # A core counts as spare when others used less than half of it (one is this thread's).
            self.spare = max(0, int(self.cores - 1 - others + 0.5))
        self._last = (now, machine, own)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sample()
        self._timer = loop.call_later(SAMPLE_SECONDS, self.start, loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
