"""Point-in-time training sets from the feature group's offline store.

:func:`point_in_time_query` writes the SQL that joins a table of *entities* (a customer id, a cutoff
time and, usually, the label observed after the cutoff) to the offline store, and returns for every
entity the feature values of the customer's latest record with an event time at or before its
cutoff:

- no leakage: records with an event time after the cutoff are never used, however early they were
  written;
- late records: a record that arrives late (written after a newer event) does not replace the newer
  event; the event time orders records, the write time only breaks ties;
- duplicates: the same event written twice (a retried or repeated ingestion) counts once: the last
  write wins;
- deletions: when the latest record before the cutoff is a deletion (``is_deleted``), the entity
  gets no features;
- missing ids: an entity without any record before its cutoff comes back with NULL features, never
  dropped, so the caller sees how many there are.

Two writes of the same event with the same write and invocation time (which Feature Store stamps in
milliseconds) have no defined winner.

Duplicate entity rows are merged. The result has the raw-data columns preprocessing reads (id, event
time, features, label) plus the cutoff, so it can feed the training pipeline as it is.

The entities come from a table (``entity_table``) or from a query (``entity_query``), such as
:func:`labels_query`, which reads one dataset of the labels table (customer id, label time, label)
and names the label time the cutoff: features as of each label's time.

The SQL is written for Athena (Trino), the engine that queries the offline store, and for DuckDB,
which proves its semantics locally (``tests/test_training_set.py``). Times are ISO 8601 strings on
both sides (the feature group stores its event time that way); the one difference between the two
dialects is the function that parses them.
"""

from __future__ import annotations

import re
from typing import Literal

from feature_schema import FeatureSchema

Dialect = Literal["athena", "duckdb"]
CUTOFF_COLUMN = "cutoff_time"
# The labels table (build_training_set.py): one row per customer and label time, partitioned by dataset.
LABEL_TIME_COLUMN = "label_time"
LABELS_PARTITION = "dataset"
# Columns Feature Store adds to every record of the offline store.
WRITE_TIME = "write_time"
API_INVOCATION_TIME = "api_invocation_time"
IS_DELETED = "is_deleted"


def _parse_time(dialect: Dialect, expression: str) -> str:
    if dialect == "athena":
        return f"from_iso8601_timestamp({expression})"
    if dialect == "duckdb":
        return f"CAST({expression} AS TIMESTAMPTZ)"
    raise ValueError(f"unknown SQL dialect {dialect!r}; use 'athena' or 'duckdb'")


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes (Athena and DuckDB); ``db.table`` is quoted part by part."""
    parts = identifier.split(".")
    for part in parts:
        if not part or '"' in part:
            raise ValueError(f"not a table or column name: {identifier!r}")
    return ".".join(f'"{part}"' for part in parts)


def literal(value: str) -> str:
    """A SQL string literal of a name-like value (letters, digits, ``._=-``); anything else is refused."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,99}", value):
        raise ValueError(
            f"not a dataset name: {value!r}; use 1-100 letters, digits, '.', '_', '=' or '-', starting with a "
            "letter or digit"
        )
    return f"'{value}'"


def labels_query(schema: FeatureSchema, *, labels_table: str, dataset: str) -> str:
    """The entities of one labels dataset: record identifier, label time as the cutoff, the label.

    The labels table stores text (CSV); the label is cast to an integer, the label time stays ISO
    8601 text like the event times it is compared with.
    """
    identifier = quote(schema.record_identifier.name)
    label = quote(schema.label.name)
    columns = f"{identifier}, {quote(LABEL_TIME_COLUMN)} AS {quote(CUTOFF_COLUMN)}, CAST({label} AS integer) AS {label}"
    where = f"{quote(LABELS_PARTITION)} = {literal(dataset)}"
    # Quoted identifiers and a checked name-like literal only.
    return f"SELECT {columns} FROM {quote(labels_table)} WHERE {where}"  # noqa: S608


def point_in_time_query(
    schema: FeatureSchema,
    *,
    feature_table: str,
    entity_table: str | None = None,
    entity_query: str | None = None,
    dialect: Dialect,
    label: bool = True,
) -> str:
    """SELECT the latest features at or before each entity's cutoff; see the module docstring.

    ``feature_table`` is the offline store's table (``database.table``). The entities are a table,
    ``entity_table``, or a SELECT, ``entity_query`` (exactly one of the two); they have the record
    identifier, ``cutoff_time`` (ISO 8601 string) and, when ``label``, the schema's label.
    """
    if (entity_table is None) == (entity_query is None):
        raise ValueError("give the entities as entity_table or as entity_query, not both or neither")
    entity_source = quote(entity_table) if entity_table is not None else f"({entity_query}) AS labelled"
    identifier = quote(schema.record_identifier.name)
    event_time = quote(schema.event_time.name)
    cutoff = quote(CUTOFF_COLUMN)
    features = [quote(column.name) for column in schema.features]
    label_column = [quote(schema.label.name)] if label else []
    event_at = _parse_time(dialect, f"f.{event_time}")
    cutoff_at = _parse_time(dialect, f"e.{cutoff}")
    feature_list = ", ".join(f"f.{name}" for name in features)
    output = ", ".join(
        [
            f"e.{identifier}",
            f"c.{event_time}",
            *(f"c.{name}" for name in features),
            *(f"e.{name}" for name in label_column),
            f"e.{cutoff}",
        ]
    )
    entity_columns = ", ".join([identifier, cutoff, *label_column])
    # Only quoted identifiers from the schema and the caller's table names go in; no values.
    return f"""WITH entities AS (
    SELECT DISTINCT {entity_columns}
    FROM {entity_source}
),
candidates AS (
    SELECT
        e.{identifier} AS entity_id,
        e.{cutoff} AS entity_cutoff,
        f.{event_time}, {feature_list}, f.{IS_DELETED},
        row_number() OVER (
            PARTITION BY e.{identifier}, e.{cutoff}
            ORDER BY {event_at} DESC, f.{WRITE_TIME} DESC, f.{API_INVOCATION_TIME} DESC
        ) AS recency
    FROM (SELECT DISTINCT {identifier}, {cutoff} FROM entities) AS e
    JOIN {quote(feature_table)} AS f
        ON f.{identifier} = e.{identifier}
        AND {event_at} <= {cutoff_at}
)
SELECT {output}
FROM entities AS e
LEFT JOIN candidates AS c
    ON c.entity_id = e.{identifier}
    AND c.entity_cutoff = e.{cutoff}
    AND c.recency = 1
    AND NOT c.{IS_DELETED}
ORDER BY e.{identifier}, e.{cutoff}"""  # noqa: S608


def output_columns(schema: FeatureSchema, *, label: bool = True) -> list[str]:
    """The columns the query returns, in order."""
    return [
        schema.record_identifier.name,
        schema.event_time.name,
        *(column.name for column in schema.features),
        *([schema.label.name] if label else []),
        CUTOFF_COLUMN,
    ]
