"""Point-in-time training sets: the query's semantics proven on Parquet data with DuckDB.

The offline store is modelled as Feature Store writes it: the schema's columns (event time as an
ISO 8601 string) plus ``write_time``, ``api_invocation_time`` and ``is_deleted``. The Athena query
is parsed as Trino SQL by sqlglot, transpiled to DuckDB and must return exactly what the DuckDB
query returns.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import sqlglot

from feature_schema import load_schema
from training_set import CUTOFF_COLUMN, output_columns, point_in_time_query, quote

SCHEMA = load_schema()
FEATURES = [column.name for column in SCHEMA.features]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def record(customer: str, event: float, written: float, tenure: int, *, deleted: bool = False) -> dict[str, Any]:
    """One offline-store row; ``tenure`` marks which write it is, the other features follow it."""
    row: dict[str, Any] = {"customer_id": customer, "event_time": iso(day(event))}
    row.update({name: float(tenure) for name in FEATURES})
    row.update(write_time=day(written), api_invocation_time=day(written) - timedelta(minutes=5), is_deleted=deleted)
    return row


def run_query(
    tmp_path: Path, offline: list[dict[str, Any]], entities: list[dict[str, Any]], dialect: str
) -> pd.DataFrame:
    frame = pd.DataFrame(offline)
    frame["write_time"] = pd.to_datetime(frame["write_time"], utc=True)
    frame["api_invocation_time"] = pd.to_datetime(frame["api_invocation_time"], utc=True)
    frame.to_parquet(tmp_path / "offline.parquet", index=False)
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(
        f"CREATE SCHEMA features; CREATE VIEW features.customers_v1 AS SELECT * FROM read_parquet('{tmp_path / 'offline.parquet'}')"  # noqa: S608
    )
    entity_frame = pd.DataFrame(entities, columns=["customer_id", CUTOFF_COLUMN, "churned"])  # noqa: F841 (DuckDB reads it by name)
    connection.execute("CREATE TABLE entities_in AS SELECT * FROM entity_frame")
    sql = point_in_time_query(
        SCHEMA,
        feature_table="features.customers_v1",
        entity_table="entities_in",
        dialect="athena" if dialect == "athena" else "duckdb",
    )
    if dialect == "athena":  # the Athena text, parsed as Trino SQL and run on DuckDB
        sql = sqlglot.transpile(sql, read="athena", write="duckdb")[0]
    result = connection.execute(sql).df()
    assert list(result.columns) == output_columns(SCHEMA)
    return result


def entity(customer: str, cutoff: float, label: int = 0) -> dict[str, Any]:
    return {"customer_id": customer, CUTOFF_COLUMN: iso(day(cutoff)), "churned": label}


def tenure_at(result: pd.DataFrame, customer: str, cutoff: float) -> float | None:
    (row,) = result[(result["customer_id"] == customer) & (result[CUTOFF_COLUMN] == iso(day(cutoff)))].itertuples()
    value: Any = row.tenure
    return None if pd.isna(value) else float(value)


OFFLINE = [
    # a: three monthly records
    record("a", 0, 0.1, 1),
    record("a", 31, 31.1, 2),
    record("a", 59, 59.1, 3),
    # b: the Jan 10 record arrives late, after the Jan 15 one
    record("b", 9, 19, 10),
    record("b", 14, 15, 15),
    # c: the same event written twice; the second write wins
    record("c", 4, 5, 4),
    record("c", 4, 6, 5),
    # d: only a record after every cutoff (future-dated, written early: still leakage)
    record("d", 60, 1, 60),
    # e: a record, then its deletion
    record("e", 0, 0.5, 7),
    record("e", 9, 9.5, 7, deleted=True),
    # f: an event exactly at the cutoff
    record("f", 20, 20.5, 20),
]


@pytest.mark.parametrize("dialect", ["duckdb", "athena"])
def test_point_in_time_semantics(tmp_path: Path, dialect: str) -> None:
    entities = [
        entity("a", 45, 1),
        entity("a", 10),  # the same customer at two cutoffs
        entity("a", 10),  # a duplicate entity row: merged
        entity("b", 17),
        entity("c", 30),
        entity("d", 30),
        entity("e", 5),
        entity("e", 15),
        entity("f", 20),
        entity("zz", 30),  # no record at all
    ]
    result = run_query(tmp_path, OFFLINE, entities, dialect)
    assert len(result) == 9  # the duplicate merged, nothing dropped
    assert tenure_at(result, "a", 45) == 2  # the latest before the cutoff, not the later one
    assert tenure_at(result, "a", 10) == 1
    assert tenure_at(result, "b", 17) == 15  # the late write of an older event does not win
    assert tenure_at(result, "c", 30) == 5  # one row for the duplicated event: the last write
    assert tenure_at(result, "d", 30) is None  # no leakage of a future event
    assert tenure_at(result, "e", 5) == 7
    assert tenure_at(result, "e", 15) is None  # deleted before the cutoff
    assert tenure_at(result, "f", 20) == 20  # at the cutoff counts
    assert tenure_at(result, "zz", 30) is None  # a missing id comes back with NULL features
    a45 = result[(result["customer_id"] == "a") & (result[CUTOFF_COLUMN] == iso(day(45)))].iloc[0]
    assert a45["churned"] == 1
    assert a45["event_time"] == iso(day(31))


def test_time_zones_are_compared_as_instants(tmp_path: Path) -> None:
    offline = [record("a", 0, 0.1, 1)]
    offline[0]["event_time"] = "2026-01-10T01:00:00+01:00"  # = 2026-01-10T00:00:00Z
    entities = [{"customer_id": "a", CUTOFF_COLUMN: "2026-01-10T00:00:00Z", "churned": 0}]
    for dialect in ("duckdb", "athena"):
        result = run_query(tmp_path, offline, entities, dialect)
        assert result["tenure"].tolist() == [1.0]


def _number(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


def reference(offline: list[dict[str, Any]], entities: list[dict[str, Any]]) -> dict[tuple[str, str], float | None]:
    """The semantics, written the slow obvious way."""
    answers: dict[tuple[str, str], float | None] = {}
    for item in entities:
        cutoff = datetime.fromisoformat(item[CUTOFF_COLUMN])
        rows = [
            r
            for r in offline
            if r["customer_id"] == item["customer_id"] and datetime.fromisoformat(r["event_time"]) <= cutoff
        ]
        latest = max(
            rows,
            key=lambda r: (
                datetime.fromisoformat(r["event_time"]),
                r["write_time"],
                r["api_invocation_time"],
            ),
            default=None,
        )
        answers[(item["customer_id"], item[CUTOFF_COLUMN])] = (
            None if latest is None or latest["is_deleted"] else float(latest["tenure"])
        )
    return answers


def test_random_histories_match_the_reference(tmp_path: Path) -> None:
    rng = random.Random(11)  # noqa: S311  (test data)
    offline = []
    for index in range(400):
        customer = f"c{rng.randrange(40)}"
        event = rng.randrange(0, 90)
        # Some writes arrive late; no two writes share a write time (a tie has no right answer).
        written = event + rng.choice([0.1, 0.2, rng.uniform(0, 30)]) + index * 1e-4
        offline.append(record(customer, event, written, index, deleted=rng.random() < 0.05))
    entities = [entity(f"c{rng.randrange(45)}", rng.randrange(0, 100), rng.randrange(2)) for _ in range(300)]
    expected = reference(offline, entities)
    for dialect in ("duckdb", "athena"):
        result = run_query(tmp_path, offline, entities, dialect)
        found = {(row.customer_id, getattr(row, CUTOFF_COLUMN)): _number(row.tenure) for row in result.itertuples()}
        assert found == expected
        assert len(result) == len({(e["customer_id"], e[CUTOFF_COLUMN], e["churned"]) for e in entities})


def test_the_athena_text_is_valid_trino_sql_and_differs_only_in_time_parsing() -> None:
    athena = point_in_time_query(SCHEMA, feature_table="db.t", entity_table="e", dialect="athena")
    local = point_in_time_query(SCHEMA, feature_table="db.t", entity_table="e", dialect="duckdb")
    sqlglot.parse_one(athena, read="athena")  # raises on a syntax error
    assert athena.count("from_iso8601_timestamp(") == 3  # the event time twice, the cutoff once
    assert athena.replace('from_iso8601_timestamp(f."event_time")', "X").replace(
        'from_iso8601_timestamp(e."cutoff_time")', "Y"
    ) == local.replace('CAST(f."event_time" AS TIMESTAMPTZ)', "X").replace('CAST(e."cutoff_time" AS TIMESTAMPTZ)', "Y")


@pytest.mark.parametrize("name", ['a"b', "", "db..t"])
def test_table_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="not a table or column name"):
        quote(name)


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect 'spark'"):
        point_in_time_query(SCHEMA, feature_table="t", entity_table="e", dialect="spark")  # type: ignore[arg-type]
