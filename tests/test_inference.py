"""The serving contract: predictions equal XGBoost's, and every row of the status matrix."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from numpy.typing import NDArray

import inference
import server
import serving_env
from churn_data import generate_customers
from feature_schema import load_schema
from serving_env import MAX_REQUEST_BYTES
from tests.conftest import Response, asgi_request

NAMES = list(load_schema().model_features)
CSV = {"Content-Type": "text/csv"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def model(serving_model_dir: Path) -> inference.ChurnModel:
    loaded = server.load(serving_model_dir, fast_path=False)
    loaded.build_fast_path()  # synchronously, so every test sees the same backends
    assert loaded.fast_path_ready
    return loaded


@pytest.fixture(scope="module")
def rows() -> NDArray[Any]:
    data = generate_customers(1000, seed=77)[NAMES].to_numpy(np.float32)
    data[::13, 5] = np.nan  # missing values take each tree's default branch
    return data


def invoke(body: bytes | str, headers: dict[str, str] | None = None, **kwargs: Any) -> Response:
    payload = body.encode() if isinstance(body, str) else body
    return asgi_request(server.app, "POST", "/invocations", payload, {**CSV, **(headers or {})}, **kwargs)


def csv_of(matrix: NDArray[Any]) -> str:
    return "\n".join(",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in matrix)


def scores(response: Response) -> NDArray[Any]:
    assert response.status == 200, response.body
    return np.array([float(line) for line in response.body.decode().split()], dtype=np.float64)


def test_predictions_equal_xgboost_on_1000_rows(model: inference.ChurnModel, rows: NDArray[Any]) -> None:
    expected = model.booster.predict(xgb.DMatrix(rows, feature_names=NAMES))
    # One request of 1,000 rows (XGBoost itself) ...
    batch = scores(invoke(csv_of(rows)))
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-6)
    # ... and the same rows in small requests (the ONNX Runtime fast path).
    small = np.concatenate([scores(invoke(csv_of(rows[i : i + 8]))) for i in range(0, len(rows), 8)])
    np.testing.assert_allclose(small, expected, rtol=0, atol=1e-6)
    single = [scores(invoke(csv_of(rows[i : i + 1])))[0] for i in range(0, len(rows), 50)]
    np.testing.assert_allclose(single, expected[::50], rtol=0, atol=1e-6)


def test_json_rows_records_and_output_formats(model: inference.ChurnModel, rows: NDArray[Any]) -> None:
    expected = model.booster.predict(xgb.DMatrix(rows[:3], feature_names=NAMES))
    as_lists = [[None if np.isnan(v) else float(v) for v in row] for row in rows[:3]]
    as_records = [dict(zip(NAMES, row, strict=True)) for row in as_lists]
    for instances in (as_lists, as_records):
        response = invoke(json.dumps({"instances": instances}), {**JSON, "Accept": "application/json"})
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        got = [item["score"] for item in json.loads(response.body)["predictions"]]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    lines = invoke(csv_of(rows[:3]), {"Accept": "application/jsonlines"})
    assert lines.headers["content-type"] == "application/jsonlines"
    assert [json.loads(line)["score"] for line in lines.body.decode().splitlines()] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/csv"),
        ("*/*", "text/csv"),
        ("application/json;q=0.5, text/csv", "text/csv"),
        ("text/csv;q=0.2, application/json;q=0.9", "application/json"),
        ("application/*", "application/json"),
        ("image/png, */*;q=0.1", "text/csv"),
    ],
)
def test_accept_negotiation(
    model: inference.ChurnModel, rows: NDArray[Any], accept: str | None, content_type: str
) -> None:
    response = invoke(csv_of(rows[:1]), {"Accept": accept} if accept else {})
    assert response.status == 200
    assert response.headers["content-type"] == content_type


def test_csv_variants_are_accepted(model: inference.ChurnModel, rows: NDArray[Any]) -> None:
    text = csv_of(rows[:4])
    reference = scores(invoke(text))
    for variant in (text + "\n", text.replace("\n", "\r\n"), "  " + text + "\n\n"):
        np.testing.assert_allclose(scores(invoke(variant)), reference, rtol=0, atol=1e-7)
    assert invoke(text, {"Content-Type": "text/csv; charset=utf-8"}).status == 200


VALID_ROW = "12,70.5,845.2,1,2,0,2,1,1,0"


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (VALID_ROW, {"Content-Type": "text/plain"}, 415, "unsupported Content-Type 'text/plain'"),
        (VALID_ROW, {"Content-Type": ""}, 415, "missing Content-Type"),
        (VALID_ROW, {"Content-Type": "text/csv; charset=latin-1"}, 415, "charset"),
        (VALID_ROW, {"Accept": "image/png"}, 406, "cannot answer with Accept 'image/png'"),
        (VALID_ROW, {"Accept": "text/csv;q=0"}, 406, "cannot answer"),
        ("", {}, 400, "empty body"),
        ("  \n ", {}, 400, "empty body"),
        ("12,70.5,845.2", {}, 400, "line 1 has 3 values; the model expects 10 values (tenure,"),
        (VALID_ROW + ",7", {}, 400, "line 1 has 11 values"),
        (VALID_ROW + "\n1,2", {}, 400, "line 2 has 2 values"),
        (VALID_ROW + "\n\n" + VALID_ROW, {}, 400, "line 2 is empty"),
        ("12,seventy,845.2,1,2,0,2,1,1,0", {}, 400, "line 1, column 2 (monthly_charges): 'seventy' is not a number"),
        ("tenure,b,c,d,e,f,g,h,i,j\n" + VALID_ROW, {}, 400, "line 1, column 1 (tenure): 'tenure' is not a number"),
        ("12,nan,845.2,1,2,0,2,1,1,0", {}, 400, "NaN is not a value"),
        ("12,inf,845.2,1,2,0,2,1,1,0", {}, 400, "out of range"),
        ("12,1e39,845.2,1,2,0,2,1,1,0", {}, 400, "out of range"),
        (b"12,\xff\xfe,845.2,1,2,0,2,1,1,0", {}, 400, "is not a number"),
        ('{"instances": [[1, 2]]}', JSON, 400, "instances[0] has 2 values"),
        ('{"rows": []}', JSON, 400, 'expected a JSON object {"instances": [...]}'),
        ('{"instances": []}', JSON, 400, "non-empty list"),
        ('{"instances": [{"tenure": 1}]}', JSON, 400, "lacks feature(s) monthly_charges"),
        ('{"instances": [{"tenur": 1}]}', JSON, 400, "unknown feature(s) tenur"),
        ('{"instances": [["12",1,1,1,1,1,1,1,1,1]]}', JSON, 400, "is a string"),
        ('{"instances": [[NaN,1,1,1,1,1,1,1,1,1]]}', JSON, 400, "NaN is not valid JSON"),
        ('{"instances": [[1e999,1,1,1,1,1,1,1,1,1]]}', JSON, 400, "out of range"),
        ('{"instances": [[' + "9" * 400 + ",1,1,1,1,1,1,1,1,1]]}", JSON, 400, "out of range"),
        ("{not json", JSON, 400, "not valid JSON"),
        ("[" * 100_000, JSON, 400, "not valid JSON"),
        ('"just a string"', JSON, 400, "expected a JSON object"),
    ],
)
def test_status_matrix(
    model: inference.ChurnModel, body: str | bytes, headers: dict[str, str], status: int, message: str
) -> None:
    response = invoke(body, headers)
    assert response.status == status, response.body
    assert message in response.body.decode(errors="replace")
    assert response.headers["content-type"].startswith("text/plain")


def test_body_over_the_limit_is_refused_with_413(model: inference.ChurnModel) -> None:
    big = b"1," * (MAX_REQUEST_BYTES // 2 + 1)
    declared = invoke(big, {"Content-Length": str(len(big))})
    assert declared.status == 413
    streamed = invoke(big, chunk_size=65_536)  # no Content-Length: refused while reading
    assert streamed.status == 413
    assert "6291456-byte limit" in streamed.body.decode()


def test_a_body_just_under_the_limit_is_scored(model: inference.ChurnModel, rows: NDArray[Any]) -> None:
    line = csv_of(rows[:1]) + "\n"
    body = (line * (MAX_REQUEST_BYTES // len(line))).encode()
    assert len(body) <= MAX_REQUEST_BYTES
    response = invoke(body, {"Content-Length": str(len(body))})
    assert response.status == 200
    assert response.body.count(b"\n") == body.count(b"\n")


def test_routes(model: inference.ChurnModel) -> None:
    assert asgi_request(server.app, "GET", "/ping").status == 200
    assert asgi_request(server.app, "GET", "/nope").status == 404
    assert asgi_request(server.app, "GET", "/invocations").status == 405
    parameters = asgi_request(server.app, "GET", "/execution-parameters")
    assert json.loads(parameters.body)["MaxPayloadInMB"] == 6


def test_ping_is_503_until_the_model_is_loaded(model: inference.ChurnModel) -> None:
    loaded = server._state["model"]
    try:
        server._state["model"] = None
        assert asgi_request(server.app, "GET", "/ping").status == 503
        assert invoke(VALID_ROW).status == 503
    finally:
        server._state["model"] = loaded
    assert asgi_request(server.app, "GET", "/ping").status == 200


def test_model_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(inference.ModelLoadError, match="no xgboost-model in"):
        inference.model_fn(tmp_path)
    (tmp_path / "xgboost-model").write_text("not a model")
    with pytest.raises(inference.ModelLoadError, match="is not an XGBoost model"):
        inference.model_fn(tmp_path)


def test_the_server_validates_against_the_models_schema_features(model: inference.ChurnModel) -> None:
    assert model.feature_names == tuple(NAMES)
    assert model.num_features == len(NAMES)


# --- several threads for a large batch --------------------------------------------------------------


@pytest.fixture(scope="module")
def sliced(serving_model_dir: Path) -> inference.ChurnModel:
    """The model as a worker loads it, with slices small enough for test-sized batches."""
    return inference.model_fn(serving_model_dir, threads=3, rows_per_thread=64)


def test_the_thread_count_follows_the_batch_size(sliced: inference.ChurnModel) -> None:
    assert [sliced.threads_for(rows) for rows in (1, 63, 127, 128, 191, 192, 10_000)] == [1, 1, 1, 2, 2, 3, 3]
    single = inference.ChurnModel(sliced.booster, threads=1, rows_per_thread=1)
    assert single.threads_for(1_000_000) == 1


def test_sliced_scores_equal_xgboost(sliced: inference.ChurnModel, rows: NDArray[Any]) -> None:
    expected = sliced.booster.predict(xgb.DMatrix(rows, feature_names=NAMES))
    complete = rows[~np.isnan(rows).any(axis=1)]
    complete_expected = expected[~np.isnan(rows).any(axis=1)]
    # A CSV body is parsed and scored in slices; one with missing values takes the careful path.
    for matrix, reference in ((complete, complete_expected), (rows, expected)):
        status, body, _ = inference.handle(csv_of(matrix).encode(), "text/csv", None, sliced, "text/csv")
        assert status == 200
        np.testing.assert_allclose(np.array(body.split(), dtype=np.float64), reference, rtol=0, atol=1e-6)
    assert inference._score_csv_in_slices(csv_of(rows).encode(), sliced) is None
    # Windows line endings; JSON is decoded whole and predicted in slices.
    for text in (csv_of(complete), csv_of(complete).replace("\n", "\r\n")):
        slices = inference._score_csv_in_slices(text.encode(), sliced)
        assert slices is not None
        np.testing.assert_allclose(slices, complete_expected, rtol=0, atol=1e-6)
    instances = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    status, body, _ = inference.handle(
        json.dumps({"instances": instances}).encode(), "application/json", "text/csv", sliced, "text/csv"
    )
    np.testing.assert_allclose(np.array(body.split(), dtype=np.float64), expected, rtol=0, atol=1e-6)


def test_a_bad_line_in_a_late_slice_is_named_by_its_place_in_the_body(
    sliced: inference.ChurnModel, rows: NDArray[Any]
) -> None:
    lines = csv_of(rows[:500]).splitlines()
    lines[449] = lines[449].replace(",", ",x", 1)
    status, body, _ = inference.handle("\n".join(lines).encode(), "text/csv", None, sliced, "text/csv")
    assert status == 400
    assert body.decode().startswith("line 450, column 2")


def test_concurrent_requests_get_their_own_scores(sliced: inference.ChurnModel, rows: NDArray[Any]) -> None:
    """Slices of several batches at once on one booster (XGBoost's inplace_predict is lock-free)."""
    from concurrent.futures import ThreadPoolExecutor

    batches = [np.ascontiguousarray(rows[start : start + 300]) for start in range(0, 900, 100)]
    expected = [sliced.booster.inplace_predict(batch) for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(sliced.predict, batches * 3))
    for index, scores in enumerate(got):
        np.testing.assert_array_equal(scores, expected[index % len(batches)])


def test_scores_are_printed_with_nine_significant_digits() -> None:
    scores = np.array([0.5, 1 / 3, 1e-10, 0.999999881], dtype=np.float32)
    assert inference.output_fn(scores, "text/csv")[0] == b"0.5\n0.333333343\n1.00000001e-10\n0.999999881\n"
    assert inference.output_fn(scores[:2], "application/json")[0] == (
        b'{"predictions":[{"score":0.5},{"score":0.333333343}]}'
    )
    assert inference.output_fn(scores[:1], "application/jsonlines")[0] == b'{"score":0.5}\n'
    # Every float32 survives the round trip.
    many = np.random.default_rng(3).random(2000).astype(np.float32)
    text = inference.output_fn(many, "text/csv")[0]
    np.testing.assert_array_equal(np.array(text.split(), dtype=np.float32), many)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ML_PLATFORM_SERVING_THREADS", "0", "ML_PLATFORM_SERVING_THREADS must be a whole number of at least 1"),
        ("ML_PLATFORM_SERVING_THREADS", "two", "(got 'two')"),
        ("ML_PLATFORM_SERVING_ROWS_PER_THREAD", "-5", "ML_PLATFORM_SERVING_ROWS_PER_THREAD must be"),
        ("ML_PLATFORM_SERVING_REBALANCE", "maybe", "ML_PLATFORM_SERVING_REBALANCE must be true or false"),
    ],
)
def test_malformed_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    read = {
        "ML_PLATFORM_SERVING_THREADS": serving_env.scoring_threads,
        "ML_PLATFORM_SERVING_ROWS_PER_THREAD": serving_env.rows_per_thread,
        "ML_PLATFORM_SERVING_REBALANCE": serving_env.rebalance,
    }[name]
    with pytest.raises(serving_env.SettingError, match=re.escape(message)):
        read()


def test_settings_and_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ML_PLATFORM_SERVING_THREADS", "ML_PLATFORM_SERVING_ROWS_PER_THREAD", "ML_PLATFORM_SERVING_REBALANCE"):
        monkeypatch.delenv(name, raising=False)
    assert serving_env.scoring_threads() == (os.cpu_count() or 1)
    assert serving_env.rows_per_thread() == serving_env.DEFAULT_ROWS_PER_THREAD
    assert serving_env.rebalance() is True
    monkeypatch.setenv("ML_PLATFORM_SERVING_THREADS", "3")
    monkeypatch.setenv("ML_PLATFORM_SERVING_ROWS_PER_THREAD", "500")
    monkeypatch.setenv("ML_PLATFORM_SERVING_REBALANCE", "false")
    assert (serving_env.scoring_threads(), serving_env.rows_per_thread(), serving_env.rebalance()) == (3, 500, False)
