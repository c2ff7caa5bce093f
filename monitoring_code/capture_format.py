"""SageMaker's data-capture and Model Monitor's ground-truth formats: writing and streaming reading.

Data capture (what an endpoint writes to S3, one JSON object per line)::

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                                        "data": "12,70.5,...", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
                                        "data": "0.31", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<the caller's InferenceId>",
                       "inferenceTime": "2026-12-01T10:15:02Z"},
     "eventVersion": "0"}

under ``<capture prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl``. ``encoding`` is ``CSV``
or ``JSON`` for the content types the endpoint config names, ``BASE64`` for others. A request may
hold several rows; the response then holds one score per row.

Ground truth (what a labelling process writes, matched on the capture's ``inferenceId``, or its
``eventId`` when the caller sent none)::

    {"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "<id>"}, "eventVersion": "0"}

Reading streams: files are read one at a time and records are handed out in chunks of plain lists
(row text, score text, id), so a window of any size runs in bounded memory. A line that is not a
capture record is counted with its reason and never stops the run.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitoring_env import DataError

CAPTURE_SUFFIXES = (".jsonl", ".jsonl.gz")
EVENT_VERSION = "0"
DATE_PARTS = (re.compile(r"^\d{4}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$"))
MAX_EXAMPLES = 5


# --- writing --------------------------------------------------------------------------------------


def iso_time(moment: datetime) -> str:
    """SageMaker's inferenceTime: UTC, seconds, a trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def capture_record(
    *,
    input_data: str,
    output_data: str,
    event_id: str,
    inference_time: datetime,
    inference_id: str | None = None,
    input_content_type: str = "text/csv",
    output_content_type: str = "text/csv; charset=utf-8",
) -> dict[str, Any]:
    """One captured invocation, as SageMaker writes it (text encodings: CSV for CSV, JSON for JSON)."""

    def encoding(content_type: str) -> str:
        return "JSON" if "json" in content_type else "CSV"

    metadata: dict[str, str] = {"eventId": event_id}
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    metadata["inferenceTime"] = iso_time(inference_time)
    return {
        "captureData": {
            "endpointInput": {
                "observedContentType": input_content_type,
                "mode": "INPUT",
                "data": input_data,
                "encoding": encoding(input_content_type),
            },
            "endpointOutput": {
                "observedContentType": output_content_type,
                "mode": "OUTPUT",
                "data": output_data,
                "encoding": encoding(output_content_type),
            },
        },
        "eventMetadata": metadata,
        "eventVersion": EVENT_VERSION,
    }


def hour_folder(root: Path, moment: datetime) -> Path:
    moment = moment.astimezone(UTC)
    return root / f"{moment:%Y}" / f"{moment:%m}" / f"{moment:%d}" / f"{moment:%H}"


def write_jsonl_by_hour(
    root: Path, records: Iterable[dict[str, Any]], time_of: Any, name: str, *, suffix: str = ".jsonl"
) -> list[Path]:
    """Write records to ``root/yyyy/mm/dd/hh/<name><suffix>`` by the hour ``time_of(record)`` falls in."""
    by_hour: dict[Path, list[str]] = {}
    for record in records:
        by_hour.setdefault(hour_folder(root, time_of(record)), []).append(json.dumps(record, separators=(",", ":")))
    paths = []
    for folder, lines in sorted(by_hour.items()):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}{suffix}"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def write_capture(root: Path, endpoint: str, variant: str, records: list[dict[str, Any]], name: str) -> list[Path]:
    """SageMaker's layout: ``root/<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl``."""

    def time_of(record: dict[str, Any]) -> datetime:
        return parse_time(record["eventMetadata"]["inferenceTime"])

    return write_jsonl_by_hour(root / endpoint / variant, records, time_of, name)


def ground_truth_record(event_id: str, label: str) -> dict[str, Any]:
    return {
        "groundTruthData": {"data": label, "encoding": "CSV"},
        "eventMetadata": {"eventId": event_id},
        "eventVersion": EVENT_VERSION,
    }


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC. ValueError names the text."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- reading capture ------------------------------------------------------------------------------


@dataclass
class CaptureChunk:
    """Rows of one variant, as text: what the request held and what the model answered."""

    variant: str
    rows: list[str] = field(default_factory=list)  # each row's feature values, comma-separated
    scores: list[str] = field(default_factory=list)  # the score the endpoint answered for that row
    ids: list[str] = field(default_factory=list)  # inferenceId, else eventId, of the row's request
    positions: list[int] = field(default_factory=list)  # the row's index inside its request
    sizes: list[int] = field(default_factory=list)  # rows in the row's request

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Malformed:
    """Lines that are not usable capture records, by reason, with a few examples (file:line)."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, where: str, count: int = 1) -> None:
        """``count`` lines with ``reason``; ``where`` (file:line) is kept as an example of the first."""
        self.counts[reason] += count
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class RecordError(ValueError):
    """A capture line that cannot be used; the message is the reason."""


def variant_of(path: Path, root: Path) -> str:
    """The folder right above ``yyyy/mm/dd/hh`` in ``path`` (relative to ``root``)."""
    parts = path.relative_to(root).parts[:-1]
    if len(parts) >= 5 and all(pattern.match(part) for pattern, part in zip(DATE_PARTS, parts[-4:], strict=True)):
        return parts[-5]
    raise DataError(
        f"capture file {path.relative_to(root)} is not in SageMaker's layout <endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl "
        f"under {root}; give the job the capture prefix (or the endpoint's folder) as its capture input"
    )


def capture_files(root: Path) -> list[tuple[str, Path]]:
    """(variant, file) of every capture file under ``root``, sorted by path."""
    if not root.is_dir():
        raise DataError(f"capture folder {root} does not exist; give the job the window's data-capture files")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES))
    return [(variant_of(path, root), path) for path in files]


def holds_capture(root: Path | None) -> bool:
    """Whether ``root`` is a folder holding at least one capture file (a missing or empty one holds none)."""
    if root is None or not root.is_dir():
        return False
    return any(p.is_file() and p.name.endswith(CAPTURE_SUFFIXES) for p in root.rglob("*"))


def read_lines(path: Path) -> Iterator[str]:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as compressed:
            yield from compressed
    else:
        with path.open(encoding="utf-8", errors="replace") as handle:
            yield from handle


def _text_of(section: dict[str, Any]) -> tuple[str, str]:
    """(decoded text, content type) of endpointInput or endpointOutput."""
    data = section["data"]
    encoding = section.get("encoding", "CSV")
    content_type = str(section.get("observedContentType") or "").split(";")[0].strip().lower()
    if not isinstance(data, str):
        raise RecordError("data is not a string")
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RecordError("BASE64 data does not decode to UTF-8 text") from None
    elif encoding not in ("CSV", "JSON"):
        raise RecordError(f"unknown encoding {str(encoding)[:20]!r}")
    if not content_type:
        content_type = "application/json" if encoding == "JSON" else "text/csv"
    return data, content_type


def _field(value: Any) -> str:
    """A JSON value as CSV field text; anything that is not a plain number fails to parse later."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return re.sub(r"[,\n\r]", " ", str(value)) or " "


def input_rows(section: dict[str, Any], feature_names: tuple[str, ...]) -> list[str]:
    """The request's rows as comma-separated text, in the model's feature order."""
    text, content_type = _text_of(section)
    if content_type == "text/csv":
        rows = [line.strip() for line in text.strip().splitlines()]
        if not rows or not all(rows):
            raise RecordError("the request holds an empty CSV line")
        return rows
    if "json" not in content_type:
        raise RecordError(f"request content type {content_type!r} is neither CSV nor JSON")
    try:
        document = json.loads(text)
    except ValueError:
        raise RecordError("the request body is not valid JSON") from None
    instances = document.get("instances") if isinstance(document, dict) else document
    if not isinstance(instances, list) or not instances:
        raise RecordError('the JSON request has no "instances" list')
    rows = []
    index = {name: position for position, name in enumerate(feature_names)}
    for instance in instances:
        if isinstance(instance, list):
            rows.append(",".join(_field(value) for value in instance))
        elif isinstance(instance, dict):
            values = [""] * len(feature_names)
            extra = 0
            for name, value in instance.items():
                if name in index:
                    values[index[name]] = _field(value)
                else:
                    extra += 1
            rows.append(",".join(values + [" "] * extra))  # unknown names make the row too long
        else:
            raise RecordError("a JSON instance is neither a list nor an object")
    return rows


def output_scores(section: dict[str, Any]) -> list[str]:
    """The response's scores as text, one per row."""
    text, content_type = _text_of(section)
    if content_type == "text/csv":
        return [line.strip() for line in text.strip().splitlines()]
    items: Any
    try:
        if content_type == "application/jsonlines":
            items = [json.loads(line) for line in text.strip().splitlines()]
        else:
            document = json.loads(text)
            items = document.get("predictions") if isinstance(document, dict) else document
    except ValueError:
        raise RecordError("the response is not valid JSON") from None
    if not isinstance(items, list):
        raise RecordError('the JSON response has no "predictions" list')
    scores = []
    for item in items:
        value = item.get("score") if isinstance(item, dict) else item
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        scores.append(_field(value))
    return scores


def read_capture(
    root: Path, feature_names: tuple[str, ...], *, chunk_rows: int = 50_000, malformed: dict[str, Malformed]
) -> Iterator[CaptureChunk]:
    """Chunks of captured rows under ``root``; unusable lines go to ``malformed[variant]``."""
    loads = json.loads
    for variant, path in capture_files(root):
        bad = malformed.setdefault(variant, Malformed())
        chunk = CaptureChunk(variant)
        rows, scores, ids, positions, sizes = chunk.rows, chunk.scores, chunk.ids, chunk.positions, chunk.sizes
        name = path.relative_to(root).as_posix()
        for number, line in enumerate(read_lines(path), start=1):
            if not line.strip():
                continue
            try:
                record = loads(line)
                capture = record["captureData"]
                request = capture["endpointInput"]
                response = capture["endpointOutput"]
                metadata = record["eventMetadata"]
                join_id = metadata.get("inferenceId") or metadata["eventId"]
                if not isinstance(join_id, str):
                    raise RecordError("eventId is not a string")
                data = request["data"]
                answer = response["data"]
                if (
                    request.get("encoding") == "CSV"
                    and response.get("encoding") == "CSV"
                    and isinstance(data, str)
                    and isinstance(answer, str)
                    and "\n" not in data.strip()
                    and "\n" not in answer.strip()
                    and str(request.get("observedContentType", "text/csv")).startswith("text/csv")
                    and str(response.get("observedContentType", "text/csv")).startswith("text/csv")
                ):
                    row, score = data.strip(), answer.strip()
                    if not row:
                        raise RecordError("the request is empty")
                    rows.append(row)
                    scores.append(score)
                    ids.append(join_id)
                    positions.append(0)
                    sizes.append(1)
                else:
                    request_rows = input_rows(request, feature_names)
                    answers = output_scores(response)
                    if len(answers) != len(request_rows):
                        raise RecordError(f"{len(request_rows)} request rows but {len(answers)} scores")
                    count = len(request_rows)
                    rows.extend(request_rows)
                    scores.extend(answers)
                    ids.extend([join_id] * count)
                    positions.extend(range(count))
                    sizes.extend([count] * count)
            except RecordError as error:
                bad.add(str(error), f"{name}:{number}")
            except ValueError:
                bad.add("not valid JSON", f"{name}:{number}")
            except (KeyError, TypeError, AttributeError) as error:
                reason = f"missing {error}" if isinstance(error, KeyError) else "not a capture record"
                bad.add(f"{reason} (not SageMaker's capture format)", f"{name}:{number}")
            if len(rows) >= chunk_rows:
                yield chunk
                chunk = CaptureChunk(variant)
                rows, scores, ids, positions, sizes = chunk.rows, chunk.scores, chunk.ids, chunk.positions, chunk.sizes
        if rows:
            yield chunk


def capture_ids(root: Path) -> set[str]:
    """Every join id (inferenceId, else eventId) in the capture files under ``root``."""
    seen: set[str] = set()
    for _, path in capture_files(root):
        for line in read_lines(path):
            try:
                metadata = json.loads(line)["eventMetadata"]
                seen.add(str(metadata.get("inferenceId") or metadata["eventId"]))
            except (ValueError, KeyError, TypeError):
                continue
    return seen


# --- reading ground truth -------------------------------------------------------------------------


@dataclass
class GroundTruth:
    labels: dict[str, str]  # id -> the label data text ("1", or "1\n0" for a multi-row request)
    records: int = 0
    duplicates: int = 0
    malformed: Malformed = field(default_factory=Malformed)


def read_ground_truth(root: Path | None) -> GroundTruth:
    """Every ground-truth line under ``root`` (any nesting); a later file wins for a repeated id."""
    truth = GroundTruth(labels={})
    if root is None or not root.is_dir():
        return truth
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES))
    for path in files:
        name = path.relative_to(root).as_posix()
        for number, line in enumerate(read_lines(path), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                data = record["groundTruthData"]["data"]
                event_id = record["eventMetadata"]["eventId"]
                if not isinstance(event_id, str) or not event_id:
                    raise RecordError("eventMetadata.eventId is not a non-empty string")
                if isinstance(data, int | float) and not isinstance(data, bool):
                    data = repr(data)
                if not isinstance(data, str):
                    raise RecordError("groundTruthData.data is not a string")
            except RecordError as error:
                truth.malformed.add(str(error), f"{name}:{number}")
                continue
            except ValueError:
                truth.malformed.add("not valid JSON", f"{name}:{number}")
                continue
            except (KeyError, TypeError):
                truth.malformed.add("not Model Monitor's ground-truth format", f"{name}:{number}")
                continue
            truth.records += 1
            if event_id in truth.labels:
                truth.duplicates += 1
            truth.labels[event_id] = data
    return truth
