"""The HTTP shell of the serving container: a raw ASGI app around the pure functions of inference.py.

Routes (SageMaker's contract): ``GET /ping`` (200 once the model is loaded), ``POST /invocations``
and ``GET /execution-parameters`` (batch transform). Bodies over 6 MiB are refused with 413 before
they are read; unknown paths get 404, wrong methods 405. Only a bug of this server can answer 5xx.
Each worker process loads the model once, at startup. A large batch is scored on several threads
when cores are idle (``inference.ChurnModel.predict``, ``balance.SpareCores``). With several
workers, each counts its active keep-alive connections and closes one (``Connection: close`` on a
complete response) when it holds two more than another worker, so the client's reconnection lands
on the worker with room (``balance.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import balance
import inference
import serving_env

LOG = logging.getLogger("server")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_state: dict[str, Any] = {"model": None, "default_accept": "text/csv", "link": None, "cores": None}
CLOSE = (b"connection", b"close")


def load(model_dir: Any = None, *, fast_path: bool = True) -> inference.ChurnModel:
    """Load the model into this worker (and start building the fast path in the background)."""
    model = inference.model_fn(
        model_dir or serving_env.model_dir(),
        threads=serving_env.scoring_threads(),
        rows_per_thread=serving_env.rows_per_thread(),
    )
    _state["model"] = model
    _state["default_accept"] = inference.choose_accept(serving_env.default_accept(), "text/csv")
    if fast_path:
        model.start_fast_path()
    return model


def start_balancing(loop: asyncio.AbstractEventLoop) -> balance.WorkerLink | None:
    """Watch the idle cores (for the model's threads), and join the other workers in spreading
    keep-alive connections (with more than one worker)."""
    model = _state["model"]
    if model is not None and model.threads > 1:
        cores = balance.SpareCores()
        cores.start(loop)
        model.spare_cores = cores
        _state["cores"] = cores
    workers = serving_env.workers()
    if workers < 2 or not serving_env.rebalance():
        return None
    link = balance.WorkerLink(balance.Balancer(), port=serving_env.port(), workers=workers)
    link.start(loop)
    _state["link"] = link
    return link


async def _respond(
    send: Send, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", *, close: bool = False
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append(CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it grows past ``limit``."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                if _state["model"] is None:
                    load()
            except Exception as error:
                LOG.exception("model could not be loaded")
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            try:
                start_balancing(asyncio.get_running_loop())
            except OSError:  # a worker still serves on its own; it only stops sharing
                LOG.exception("cannot join the other workers; serving without moving connections")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for name in ("link", "cores"):
                if _state[name] is not None:
                    _state[name].stop()
                    _state[name] = None
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    link, client = _state["link"], scope.get("client")
    # With several workers: should this connection move to a worker with fewer connections?
    close = link is not None and client is not None and link.note(client)
    if path == "/invocations":
        if method != "POST":
            await _respond(send, 405, b"use POST for /invocations\n", close=close)
            return
        await _invocations(scope, receive, send, close)
    elif path == "/ping":
        ready = _state["model"] is not None
        await _respond(send, 200 if ready else 503, b"" if ready else b"model not loaded\n", close=close)
    elif path == "/execution-parameters":
        parameters = {
            "MaxConcurrentTransforms": serving_env.workers(),
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": 6,
        }
        await _respond(send, 200, json.dumps(parameters).encode(), "application/json", close=close)
    else:
        await _respond(send, 404, b"not found: use GET /ping or POST /invocations\n", close=close)


async def _invocations(scope: Scope, receive: Receive, send: Send, close: bool) -> None:
    model = _state["model"]
    if model is None:
        await _respond(send, 503, b"model not loaded\n", close=close)
        return
    limit = serving_env.MAX_REQUEST_BYTES
    declared = _header(scope, b"content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        await _respond(send, 413, f"body of {declared} bytes is over the {limit}-byte limit\n".encode(), close=close)
        return
    body = await _read_body(receive, limit)
    if body is None:
        await _respond(send, 413, f"body is over the {limit}-byte limit\n".encode(), close=close)
        return
    try:
        status, payload, media_type = inference.handle(
            body, _header(scope, b"content-type"), _header(scope, b"accept"), model, _state["default_accept"]
        )
    except Exception:
        LOG.exception("internal error while scoring")
        await _respond(send, 500, b"internal error\n", close=close)
        return
    await _respond(send, status, payload, media_type, close=close)
