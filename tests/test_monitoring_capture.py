"""SageMaker's data-capture and Model Monitor's ground-truth formats: written, read back, and broken lines counted."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from capture_format import (
    Malformed,
    capture_record,
    ground_truth_record,
    read_capture,
    read_ground_truth,
    variant_of,
    write_capture,
)
from monitoring_env import DataError

NAMES = ("a", "b", "c")
MOMENT = datetime(2026, 12, 1, 10, 15, 2, tzinfo=UTC)


def record(input_data: str, output_data: str, **kwargs: Any) -> dict[str, Any]:
    return capture_record(
        input_data=input_data,
        output_data=output_data,
        event_id=kwargs.pop("event_id", "e-1"),
        inference_time=kwargs.pop("inference_time", MOMENT),
        **kwargs,
    )


def read_all(root: Path, chunk_rows: int = 50_000) -> tuple[dict[str, dict[str, list[Any]]], dict[str, Malformed]]:
    malformed: dict[str, Malformed] = {}
    seen: dict[str, dict[str, list[Any]]] = {}
    for chunk in read_capture(root, NAMES, chunk_rows=chunk_rows, malformed=malformed):
        assert len(chunk) <= chunk_rows
        into = seen.setdefault(chunk.variant, {"rows": [], "scores": [], "ids": [], "positions": [], "sizes": []})
        for key in into:
            into[key].extend(getattr(chunk, key))
    return seen, malformed


def test_a_written_capture_record_has_sagemakers_layout_and_fields(tmp_path) -> None:
    written = record("1,2,3", "0.25\n", inference_id="order-17", event_id="abc")
    assert written == {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2,3", "encoding": "CSV"},
            "endpointOutput": {
                "observedContentType": "text/csv; charset=utf-8",
                "mode": "OUTPUT",
                "data": "0.25\n",
                "encoding": "CSV",
            },
        },
        "eventMetadata": {"eventId": "abc", "inferenceId": "order-17", "inferenceTime": "2026-12-01T10:15:02Z"},
        "eventVersion": "0",
    }
    (path,) = write_capture(tmp_path, "churn-prod", "Champion", [written], "part")
    assert path.relative_to(tmp_path).as_posix() == "churn-prod/Champion/2026/12/01/10/part.jsonl"
    assert json.loads(path.read_text()) == written


def test_records_are_read_back_per_variant_with_the_inference_id_or_else_the_event_id(tmp_path) -> None:
    write_capture(tmp_path, "ep", "Champion", [record("1,2,3", "0.1", inference_id="x1", event_id="e1")], "f")
    write_capture(tmp_path, "ep", "Challenger", [record("4,5,6", "0.9\n", event_id="e2")], "f")
    seen, malformed = read_all(tmp_path)
    assert seen["Champion"]["rows"] == ["1,2,3"]
    assert seen["Champion"]["scores"] == ["0.1"]
    assert seen["Champion"]["ids"] == ["x1"]
    assert seen["Challenger"]["ids"] == ["e2"]  # no InferenceId from the caller: the event id
    assert all(bad.total == 0 for bad in malformed.values())


def test_variant_comes_from_the_folder_above_the_hour_folders(tmp_path) -> None:
    path = tmp_path / "prefix" / "churn-prod" / "Shadow" / "2026" / "12" / "01" / "10" / "x.jsonl"
    assert variant_of(path, tmp_path) == "Shadow"
    assert variant_of(path, tmp_path / "prefix" / "churn-prod") == "Shadow"
    with pytest.raises(DataError, match=r"x\.jsonl is not in SageMaker.s layout"):
        variant_of(tmp_path / "prefix" / "churn-prod" / "Shadow" / "2026" / "12" / "x.jsonl", tmp_path)


def test_json_requests_and_responses_and_several_rows_per_request(tmp_path) -> None:
    by_name = json.dumps({"instances": [{"c": 3, "a": 1, "b": None}, {"a": 4, "b": 5, "c": 6}]})
    lists = json.dumps({"instances": [[7, 8, 9]]})
    answers = json.dumps({"predictions": [{"score": 0.2}, {"score": 0.3}]})
    jsonlines = base64.b64encode(b'{"score":0.4}\n').decode()
    records = [
        record(by_name, answers, input_content_type="application/json", output_content_type="application/json"),
        record(lists, "x", input_content_type="application/json"),  # one row answered "x": kept, judged later
        record("1,2,3\n4,5,6\n", "0.5\n0.6\n", inference_id="batch"),
    ]
    records[1]["captureData"]["endpointOutput"] = {
        "observedContentType": "application/jsonlines",
        "mode": "OUTPUT",
        "data": jsonlines,
        "encoding": "BASE64",
    }
    write_capture(tmp_path, "ep", "Champion", records, "f")
    seen, malformed = read_all(tmp_path)
    champion = seen["Champion"]
    assert champion["rows"] == ["1,,3", "4,5,6", "7,8,9", "1,2,3", "4,5,6"]
    assert champion["scores"] == ["0.2", "0.3", "0.4", "0.5", "0.6"]
    assert champion["positions"] == [0, 1, 0, 0, 1]
    assert champion["sizes"] == [2, 2, 1, 2, 2]
    assert champion["ids"][3:] == ["batch", "batch"]
    assert malformed["Champion"].total == 0


def test_lines_that_are_not_capture_records_are_counted_with_their_reason(tmp_path) -> None:
    good = record("1,2,3", "0.1")
    no_input = record("1,2,3", "0.1")
    del no_input["captureData"]["endpointInput"]
    wrong_count = record("1,2,3\n4,5,6", "0.1")
    bad_encoding = record("1,2,3", "0.1")
    bad_encoding["captureData"]["endpointInput"]["encoding"] = "UTF-7"
    bad_base64 = record("1,2,3", "0.1")
    bad_base64["captureData"]["endpointInput"]["encoding"] = "BASE64"
    (path,) = write_capture(tmp_path, "ep", "Champion", [good, no_input, wrong_count, bad_encoding, bad_base64], "f")
    with path.open("a") as handle:
        handle.write('{"captureData": {"endpointInput": \n[1, 2]\n\n')
    seen, malformed = read_all(tmp_path)
    assert seen["Champion"]["rows"] == ["1,2,3"]
    bad = malformed["Champion"]
    assert bad.counts == {
        "missing 'endpointInput' (not SageMaker's capture format)": 1,
        "2 request rows but 1 scores": 1,
        "unknown encoding 'UTF-7'": 1,
        "BASE64 data does not decode to UTF-8 text": 1,
        "not valid JSON": 1,
        "not a capture record (not SageMaker's capture format)": 1,
    }
    assert bad.total == 6
    assert bad.examples[0].startswith("ep/Champion/2026/12/01/10/f.jsonl:2: ")


def test_gzipped_files_and_chunks(tmp_path) -> None:
    lines = [json.dumps(record(f"{i},{i},{i}", "0.5", event_id=f"e{i}")) for i in range(25)]
    folder = tmp_path / "ep" / "Champion" / "2026" / "12" / "01" / "10"
    folder.mkdir(parents=True)
    (folder / "a.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    seen, _ = read_all(tmp_path, chunk_rows=10)
    assert len(seen["Champion"]["rows"]) == 25
    assert seen["Champion"]["ids"][-1] == "e24"


def test_ground_truth_is_read_with_duplicates_and_broken_lines_counted(tmp_path) -> None:
    first, second = tmp_path / "2026" / "12" / "01" / "10", tmp_path / "2026" / "12" / "01" / "11"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    (first / "a.jsonl").write_text(
        "\n".join(json.dumps(r) for r in (ground_truth_record("x", "1"), ground_truth_record("y", "0")))
        + "\nnot json\n"
    )
    (second / "b.jsonl").write_text(
        json.dumps(ground_truth_record("x", "0"))
        + "\n"
        + json.dumps({"groundTruthData": {"data": 1, "encoding": "CSV"}, "eventMetadata": {"eventId": "z"}})
        + "\n"
        + json.dumps({"eventMetadata": {"eventId": "w"}})
        + "\n"
    )
    truth = read_ground_truth(tmp_path)
    assert truth.labels == {"x": "0", "y": "0", "z": "1"}  # the later file wins for x
    assert (truth.records, truth.duplicates, truth.malformed.total) == (4, 1, 2)
    assert read_ground_truth(tmp_path / "absent").labels == {}


def test_the_labelled_capture_pass_labels_the_same_rows_as_the_window_pass(tmp_path) -> None:
    """monitor.py reads labels either in the window's capture (one pass with the statistics) or in the
    labelled capture (a pass that parses labelled rows only): both must find the same labelled rows,
    whatever the requests hold (several rows, broken rows or scores, unusable or missing labels)."""
    import numpy as np

    from churn_data import generate_customers
    from feature_schema import load_schema
    from monitor import accumulate, accumulate_labelled
    from monitor_config import MonitorConfig

    schema = load_schema()
    names = list(schema.model_features)
    rows = [",".join(f"{v:g}" for v in row) for row in generate_customers(240, seed=3)[names].to_numpy()]
    rng = np.random.default_rng(5)
    records: dict[str, list[dict[str, Any]]] = {"Champion": [], "Challenger": []}
    labels = []
    index = 0
    for number in range(120):
        size = 3 if number % 7 == 0 else 1
        batch = rows[index : index + size]
        index += size
        if number % 11 == 0:
            batch[0] = batch[0].rsplit(",", 1)[0]  # a row short of a value
        scores = [f"{rng.random():.6f}" for _ in batch]
        if number % 13 == 0:
            scores[0] = "nan"  # not a score
        request_id = f"r{number}"
        variant = "Champion" if number % 3 else "Challenger"
        records[variant].append(record("\n".join(batch), "\n".join(scores), inference_id=request_id))
        if number % 5 == 4:
            continue  # no label yet
        text = "\n".join(str(int(rng.random() < 0.3)) for _ in batch)
        if number % 17 == 0:
            text = "2"  # not a label value (or not one per row)
        labels.append(ground_truth_record(request_id, text))
    labels.append(ground_truth_record("never-captured", "1"))
    for variant, items in records.items():
        write_capture(tmp_path / "capture", "ep", variant, items, "f")
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in labels) + "\n")
    truth = read_ground_truth(tmp_path / "truth")
    config = MonitorConfig()

    windows, matched = accumulate(tmp_path / "capture", truth, schema, config, chunk_rows=16)
    found = accumulate_labelled(tmp_path / "capture", truth, schema, config, chunk_rows=16)

    assert found.matched == matched
    assert "never-captured" not in matched
    assert found.records == sum(w.records + w.malformed.total for w in windows.values())
    # Broken lines, and broken rows among the labelled ones (unlabelled rows are not parsed).
    broken = sum(w.malformed.total + w.statistics.short + w.statistics.long for w in windows.values())
    assert 0 < found.malformed < broken
    assert set(found.rows) == set(windows) == {"Champion", "Challenger"}
    for variant, window in windows.items():
        expected, got = window.labelled(), found.rows[variant].arrays()
        assert len(expected[1]) > 10
        for want, have in zip(expected, got, strict=True):
            np.testing.assert_array_equal(want, have)
        assert found.rows[variant].unusable == window.labelled_rows.unusable
    assert sum(w.labelled_rows.unusable for w in windows.values()) > 0
