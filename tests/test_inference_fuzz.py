"""No client input produces a 5xx or a crash: property tests and a bounded, seeded fuzz run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inference
import server
from feature_schema import load_schema
from tests.conftest import asgi_request

N_FEATURES = len(load_schema().model_features)
CONTENT_TYPES = [
    "text/csv",
    "application/json",
    "text/csv; charset=utf-8",
    "application/x-npy",
    "",
    "text/csv;;",
    "*/*",
]
ACCEPTS = [
    "",
    "*/*",
    "text/csv",
    "application/json",
    "application/jsonlines",
    "image/*",
    "text/csv;q=abc",
    ",,,",
    "application/json;q=0",
]
ALLOWED = {200, 400, 404, 405, 406, 413, 415}
FUZZ_REQUESTS = 3000


@pytest.fixture(scope="module", autouse=True)
def model(serving_model_dir: Path) -> inference.ChurnModel:
    loaded = server.load(serving_model_dir, fast_path=False)
    loaded.build_fast_path()
    return loaded


def post(body: bytes, content_type: str, accept: str) -> int:
    headers = {"Content-Type": content_type} if content_type else {}
    if accept:
        headers["Accept"] = accept
    return asgi_request(server.app, "POST", "/invocations", body, headers).status


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(body=st.binary(max_size=2048), content_type=st.sampled_from(CONTENT_TYPES), accept=st.sampled_from(ACCEPTS))
def test_arbitrary_bytes_never_get_a_5xx(body: bytes, content_type: str, accept: str) -> None:
    assert post(body, content_type, accept) in ALLOWED


@PROPERTY
@given(content_type=st.text(max_size=60), accept=st.text(max_size=60))
def test_arbitrary_headers_never_get_a_5xx(content_type: str, accept: str) -> None:
    def latin1(value: str) -> str:  # HTTP header values are latin-1
        return value.encode("latin-1", "replace").decode("latin-1")

    assert post(b"12,70.5,845.2,1,2,0,2,1,1,0", latin1(content_type), latin1(accept)) in ALLOWED


number = st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-(10**6), 10**6)


@PROPERTY
@given(rows=st.lists(st.lists(number, min_size=N_FEATURES, max_size=N_FEATURES), min_size=1, max_size=40))
def test_valid_csv_gets_one_score_per_row(rows: list[list[float]]) -> None:
    body = "\n".join(",".join(repr(v) for v in row) for row in rows).encode()
    response = asgi_request(server.app, "POST", "/invocations", body, {"Content-Type": "text/csv"})
    assert response.status == 200, response.body
    scores = [float(s) for s in response.body.split()]
    assert len(scores) == len(rows)
    assert all(0.0 <= s <= 1.0 for s in scores)


json_value = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=12) | st.dictionaries(st.text(max_size=8), children, max_size=12),
    max_leaves=60,
)


@PROPERTY
@given(document=json_value, wrapped=st.booleans())
def test_any_json_document_never_gets_a_5xx(document: object, wrapped: bool) -> None:
    body = json.dumps({"instances": document} if wrapped else document).encode()
    assert post(body, "application/json", "application/json") in ALLOWED


def _mutate(rng: random.Random, seed_body: bytes) -> bytes:
    body = bytearray(seed_body)
    for _ in range(rng.randint(0, 4)):
        action = rng.randrange(6)
        position = rng.randrange(len(body) + 1)
        if action == 0 and body:  # flip a byte
            body[position % len(body)] = rng.randrange(256)
        elif action == 1:  # insert punctuation a parser must survive
            body[position:position] = rng.choice(
                [b",", b"\n", b"\r", b'"', b"{", b"]", b"-", b"e", b".", b"\x00", b" "]
            )
        elif action == 2 and body:  # truncate
            del body[position:]
        elif action == 3:  # duplicate a slice
            body[position:position] = body[: rng.randrange(len(body) + 1)]
        elif action == 4:  # a huge or odd number
            body[position:position] = rng.choice([b"1e308", b"-1e400", b"9" * 50, b"nan", b"Infinity", b"0x10", b"1_0"])
        elif action == 5:  # drop a slice
            del body[position : position + rng.randrange(8)]
    return bytes(body)


def test_bounded_fuzz_run_gets_no_5xx() -> None:
    """3,000 seeded mutations of valid CSV and JSON bodies, with random headers."""
    rng = random.Random(20261121)  # noqa: S311  (a reproducible fuzz corpus, not cryptography)
    row = b"12,70.5,845.2,1,2,0,2,1,1,0"
    seeds = [
        row,
        b"\n".join([row] * 5),
        b"\n".join([row] * 12),  # parsed by numpy.loadtxt
        json.dumps({"instances": [[1.5] * N_FEATURES] * 3}).encode(),
        json.dumps({"instances": [dict.fromkeys(load_schema().model_features, 1)]}).encode(),
    ]
    statuses: dict[int, int] = {}
    for _ in range(FUZZ_REQUESTS):
        body = _mutate(rng, rng.choice(seeds))
        status = post(body, rng.choice(CONTENT_TYPES[:3]), rng.choice(ACCEPTS))
        statuses[status] = statuses.get(status, 0) + 1
    assert set(statuses) <= ALLOWED, statuses
    assert sum(statuses.values()) == FUZZ_REQUESTS
    assert statuses.get(200, 0) > 50  # the fuzzer also produced valid requests, not only noise
