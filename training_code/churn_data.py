"""Churn data: a seeded generator, and the readers that refuse bad data with a clear reason.

Two formats are read:

- raw data (preprocessing input): CSV or Parquet files *with* a header, every column of the schema;
- training data (training and evaluation input): the files preprocessing writes, CSV *without* a
  header (label first, then the model features in schema order, as SageMaker's XGBoost expects) or
  Parquet with those column names.

Every problem raises :class:`training_env.DataError` naming the file, the row and the value.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from feature_schema import Column, FeatureSchema, load_schema
from training_env import DataError

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet",)


# --- generator ------------------------------------------------------------------------------------


def generate_customers(rows: int, seed: int = 7, start: str = "2026-01-01") -> pd.DataFrame:
    """Realistic synthetic customers with a churn label that depends on the features.

    Churn rises with a short time as a customer, month-to-month contracts, support calls, late
    payments and high bills, and falls with more products and long contracts; about a quarter of
    customers churn. The same ``rows`` and ``seed`` always give the same data.

    The simulated quantities are written in the schema's column order (``feature_schema.json``), so
    the columns carry the schema's names: renaming a column there renames it here. Reordering the
    schema's features would mislabel them, which the schema's ranges catch (``tests/test_training_data.py``
    validates this data against them).
    """
    rng = np.random.default_rng(seed)
    months = np.clip(rng.gamma(1.6, 18.0, rows), 0, 120).astype(np.int64)
    contract = rng.choice(np.array([1, 12, 24]), size=rows, p=[0.5, 0.3, 0.2])
    internet = (rng.random(rows) < 0.78).astype(np.int64)
    phone = (rng.random(rows) < 0.9).astype(np.int64)
    products = np.clip(1 + rng.poisson(0.6 + 0.8 * internet), 1, 8).astype(np.int64)
    bill = np.clip(15 + 20 * phone + 35 * internet + 7 * products + rng.normal(0, 9, rows), 10, 250)
    billed = bill * np.maximum(months, 1) * rng.normal(1.0, 0.04, rows)
    calls = rng.poisson(0.3 + 0.9 * (bill > 95) + 0.4 * internet).astype(np.int64)
    late = rng.random(rows) < 0.22
    delay = np.where(late, np.ceil(rng.exponential(9.0, rows)), 0).astype(np.int64)
    senior = (rng.random(rows) < 0.16).astype(np.int64)
    logit = 1.4 * (
        -0.75
        - 0.045 * months
        + 1.15 * (contract == 1)
        - 0.7 * (contract == 24)
        + 0.38 * calls
        + 0.045 * delay
        + 0.013 * (bill - 70)
        - 0.3 * (products - 1)
        + 0.3 * senior
        + 0.35 * internet * (contract == 1)
    ) + rng.normal(0, 0.3, rows)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    seconds = rng.integers(0, 90 * 86400, rows).astype("timedelta64[s]")
    event_time = np.char.add(np.datetime_as_string(np.datetime64(start, "s") + seconds, unit="s"), "Z")
    ids = np.char.add(f"C{seed:04d}", np.char.zfill(np.arange(rows).astype(str), 9))
    # Identifier, event time, the ten features in schema order, the label.
    simulated = [ids, event_time, months, bill.round(2), billed.round(2), contract, calls, delay, products]
    simulated += [internet, phone, senior, churned]
    return pd.DataFrame(dict(zip(load_schema().raw_columns, simulated, strict=True)))


# --- splitting ------------------------------------------------------------------------------------


def _unit_hash(record_ids: pd.Series[Any], key: str) -> NDArray[Any]:
    """A stable number in [0, 1) per id: SipHash with a 16-byte key, vectorised by pandas."""
    hashes = pd.util.hash_pandas_object(record_ids.astype(str), index=False, hash_key=key).to_numpy()
    return (hashes >> np.uint64(11)).astype(np.float64) / float(2**53)


def split_of(record_ids: pd.Series[Any], seed: int, fractions: tuple[float, float]) -> NDArray[Any]:
    """Assign each record to 0 (train), 1 (validation) or 2 (test) by a seeded hash of its id.

    Every row of one customer lands in the same split, whatever the row order or file, so no
    customer leaks from training into evaluation; a new seed gives a new, equally stable split.
    """
    train, validation = fractions
    buckets = _unit_hash(record_ids, f"split{seed:011d}"[-16:])
    return np.where(buckets < train, 0, np.where(buckets < train + validation, 1, 2))


def shard_of(record_ids: pd.Series[Any], shards: int) -> NDArray[Any]:
    """A stable shard per customer (``ShardedByS3Key`` gives each training host its own files)."""
    return np.minimum((_unit_hash(record_ids, "shard-of-records") * shards).astype(int), shards - 1)


# --- raw data -------------------------------------------------------------------------------------


def data_files(directory: Path, *, what: str) -> list[Path]:
    """The CSV and Parquet files of an input folder, sorted; an empty folder is an error."""
    if not directory.is_dir():
        raise DataError(f"{what}: {directory} does not exist; give the job an input with data files")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES))
    if not files:
        found = sorted(p.name for p in directory.rglob("*") if p.is_file())[:5]
        raise DataError(
            f"{what}: no .csv, .csv.gz or .parquet files in {directory}"
            + (f" (found: {', '.join(found)})" if found else " (it is empty)")
        )
    return files


def read_raw(directory: Path, schema: FeatureSchema) -> pd.DataFrame:
    """Every raw file of ``directory`` (CSV or Parquet with a header), validated against the schema."""
    text_columns: dict[Any, Any] = {schema.record_identifier.name: str, schema.event_time.name: str}
    frames = []
    for path in data_files(directory, what="raw data"):
        if path.name.endswith(PARQUET_SUFFIXES):
            frame = pd.read_parquet(path)
            frame.columns = [str(c) for c in frame.columns]
        else:
            frame = pd.read_csv(path, dtype=text_columns)  # numbers parse natively; text stays text
        missing = [column for column in schema.raw_columns if column not in frame.columns]
        if missing:
            raise DataError(
                f"{path.name}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}. "
                f"Raw files need a header with {', '.join(schema.raw_columns)}"
            )
        if frame.empty:
            continue
        frames.append(_validated_raw(frame[list(schema.raw_columns)].reset_index(drop=True), schema, path.name))
    if not frames:
        raise DataError(f"raw data: every file in {directory} has a header but no rows")
    return pd.concat(frames, ignore_index=True)


def _validated_raw(frame: pd.DataFrame, schema: FeatureSchema, source: str) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    ids = frame[schema.record_identifier.name].astype("string").str.strip()
    empty = ids.isna() | ids.eq("")
    if empty.any():
        raise DataError(f"{source}: line {_line(empty)} has no {schema.record_identifier.name}")
    out[schema.record_identifier.name] = ids.astype(str)
    event_times = frame[schema.event_time.name].astype("string")
    parsed = pd.to_datetime(event_times, utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        bad = parsed.isna()
        raise DataError(
            f"{source}: line {_line(bad)}: {schema.event_time.name} = {event_times[bad].iloc[0]!r} is not an "
            "ISO 8601 time (e.g. 2026-03-31T00:00:00Z)"
        )
    out[schema.event_time.name] = event_times.astype(str)
    for column in schema.features:
        out[column.name] = _numeric(frame[column.name], column, source, allow_missing=True)
    out[schema.label.name] = _numeric(frame[schema.label.name], schema.label, source, allow_missing=False)
    return out


def _line(mask: pd.Series[Any]) -> int:
    """The file line of the first True row (line 1 is the header)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2


def _numeric(values: pd.Series[Any], column: Column, source: str, *, allow_missing: bool) -> pd.Series[Any]:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
    else:  # text in a numeric column: find the first value that is not a number
        text = values.astype("string").str.strip()
        blank = text.isna() | text.eq("")
        numbers = pd.to_numeric(text.mask(blank), errors="coerce")
        not_numbers = numbers.isna() & ~blank
        if not_numbers.any():
            raise DataError(
                f"{source}: line {_line(not_numbers)}: {column.name} = {text[not_numbers].iloc[0]!r} is not a number"
            )
    if not allow_missing and numbers.isna().any():
        raise DataError(f"{source}: line {_line(numbers.isna())}: {column.name} is empty (every row needs it)")
    _check_range(numbers, column, lambda mask: f"{source}: line {_line(mask)}")
    return numbers


def _check_range(numbers: pd.Series[Any], column: Column, locate: Callable[[pd.Series[Any]], str]) -> None:
    """Raise on the first value outside the column's allowed values or range; ``locate(mask)`` says where."""
    present = numbers.notna()
    if column.allowed is not None:
        bad = present & ~numbers.isin(column.allowed)
        if bad.any():
            allowed = " or ".join(f"{a:g}" for a in column.allowed)
            raise DataError(f"{locate(bad)}: {column.name} = {numbers[bad].iloc[0]:g}; it must be {allowed}")
    if column.type == "integral":
        bad = present & (numbers != np.floor(numbers))
        if bad.any():
            raise DataError(f"{locate(bad)}: {column.name} = {numbers[bad].iloc[0]:g} is not a whole number")
    if column.minimum is not None:
        bad = present & (numbers < column.minimum)
        if bad.any():
            raise DataError(f"{locate(bad)}: {column.name} = {numbers[bad].iloc[0]:g} is below {column.minimum:g}")
    if column.maximum is not None:
        bad = present & (numbers > column.maximum)
        if bad.any():
            raise DataError(f"{locate(bad)}: {column.name} = {numbers[bad].iloc[0]:g} is above {column.maximum:g}")


# --- training data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    features: NDArray[Any]  # float32, rows x model features
    labels: NDArray[Any]  # float32, 0 or 1
    files: tuple[str, ...]

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


def write_training_file(frame: pd.DataFrame, path: Path, schema: FeatureSchema) -> None:
    """Write rows in the training layout: CSV without header or Parquet, label first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(schema.training_columns)
    if path.name.endswith(PARQUET_SUFFIXES):
        frame[columns].astype("float32").to_parquet(path, index=False)
    else:
        frame[columns].to_csv(path, header=False, index=False, float_format="%.10g")


def read_training_channel(directory: Path, schema: FeatureSchema, *, channel: str) -> TrainingData:
    """All files of one channel in the training layout, validated; see the module docstring."""
    parts = [_read_training_file(path, schema, channel) for path in data_files(directory, what=f"channel {channel!r}")]
    parts = [part for part in parts if part.rows]
    if not parts:
        raise DataError(f"channel {channel!r}: the files in {directory} hold no rows")
    return TrainingData(
        features=np.concatenate([p.features for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        files=tuple(f for p in parts for f in p.files),
    )


def _read_training_file(path: Path, schema: FeatureSchema, channel: str) -> TrainingData:
    source = f"channel {channel!r}, {path.name}"
    if path.name.endswith(PARQUET_SUFFIXES):
        frame = pd.read_parquet(path)
        missing = [c for c in schema.training_columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
            )
        frame = frame[list(schema.training_columns)]
        for name in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[name]):
                converted = pd.to_numeric(frame[name], errors="coerce")
                bad = converted.isna() & frame[name].notna()
                if bad.any():
                    raise DataError(
                        f"{source}: row {int(np.flatnonzero(bad)[0]) + 1}: {name} = {frame[name][bad].iloc[0]!r} is not a number"
                    )
                frame[name] = converted
        values = frame.to_numpy(dtype=np.float32)
    else:
        values = _read_training_csv(path, schema, source)
    labels = values[:, 0]
    _check_labels(labels, schema, source)
    return TrainingData(features=np.ascontiguousarray(values[:, 1:]), labels=labels, files=(path.name,))


def _read_training_csv(path: Path, schema: FeatureSchema, source: str) -> NDArray[Any]:
    expected = len(schema.training_columns)
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    if not raw.strip():
        return np.empty((0, expected), dtype=np.float32)
    first_line = raw.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    first_fields = [field.strip().strip('"') for field in first_line.split(",")]
    if any(field in schema.training_columns for field in first_fields):
        raise DataError(
            f"{source}: the first line ({first_line[:120]!r}) is a header; training files have no header "
            f"(columns are {', '.join(schema.training_columns)} in that order). Write them with "
            "preprocess.py or header=False"
        )
    # Count the fields of every line at once (commas per line), so a short or long row is named.
    data = np.frombuffer(raw if raw.endswith(b"\n") else raw + b"\n", dtype=np.uint8)
    newlines = np.flatnonzero(data == 10)
    commas_before = np.searchsorted(np.flatnonzero(data == 44), newlines)
    fields = np.diff(np.concatenate(([0], commas_before))) + 1
    line_lengths = np.diff(np.concatenate(([-1], newlines))) - 1
    blank = line_lengths <= 0
    wrong = (fields != expected) & ~blank
    if wrong.any():
        line = int(np.flatnonzero(wrong)[0]) + 1
        raise DataError(
            f"{source}: line {line} has {int(fields[line - 1])} columns; expected {expected} "
            f"({', '.join(schema.training_columns)})"
        )
    try:  # parse the bytes already in memory; the file is not read twice
        frame = pd.read_csv(
            io.BytesIO(raw), header=None, dtype=np.float32, skip_blank_lines=True, na_values=[""], keep_default_na=False
        )
    except ValueError:
        frame = pd.read_csv(io.BytesIO(raw), header=None, dtype=str, skip_blank_lines=True, keep_default_na=False)
        for index, name in enumerate(schema.training_columns):
            text = frame[index].str.strip()
            converted = pd.to_numeric(text.where(text != ""), errors="coerce")
            bad = converted.isna() & (text != "")
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(f"{source}: line {row + 1}: {name} = {text.iloc[row]!r} is not a number") from None
        raise
    return frame.to_numpy(dtype=np.float32)


def _check_labels(labels: NDArray[Any], schema: FeatureSchema, source: str) -> None:
    missing = np.isnan(labels)
    if missing.any():
        raise DataError(
            f"{source}: line {int(np.flatnonzero(missing)[0]) + 1} has no label ({schema.label.name} is empty)"
        )
    allowed = np.asarray(schema.label.allowed or (0, 1), dtype=np.float32)
    bad = ~np.isin(labels, allowed)
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 1
        raise DataError(
            f"{source}: line {line}: label {schema.label.name} = {labels[bad][0]:g}; it must be "
            + " or ".join(f"{a:g}" for a in allowed)
        )


def require_both_classes(labels: NDArray[Any], *, channel: str) -> None:
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DataError(
            f"channel {channel!r} has only label {classes[0]:g} ({len(labels)} rows); AUC and early stopping "
            "need both classes: check the split or the data"
        )
