"""The serving contract: predictions equal XGBoost's, and every row of the status matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from numpy.typing import NDArray

import inference
import server
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
