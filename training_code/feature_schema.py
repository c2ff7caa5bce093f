"""The feature schema: the only place feature names, types and order are defined.

``feature_schema.json`` next to this file is read by preprocessing and training (column order), by
the Feature Store stack (feature group definitions), by the monitoring baseline (column header) and,
through the model it trains (the booster carries the feature names), by the inference code.
``tests/test_feature_schema.py`` proves the four agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SCHEMA_PATH = Path(__file__).with_name("feature_schema.json")

ColumnType = Literal["integral", "fractional", "string"]
_TYPES: tuple[ColumnType, ...] = ("integral", "fractional", "string")
# The Feature Store's names for the same types.
FEATURE_STORE_TYPES = {"integral": "Integral", "fractional": "Fractional", "string": "String"}


class SchemaError(ValueError):
    """The schema file itself is wrong."""


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[float, ...] | None = None
    used_by_model: bool = True
    protected: bool = False  # a protected attribute: monitoring compares its segments (bias drift)

    @property
    def numeric(self) -> bool:
        return self.type != "string"


@dataclass(frozen=True)
class FeatureSchema:
    name: str
    description: str
    record_identifier: Column
    event_time: Column
    label: Column
    features: tuple[Column, ...]

    @property
    def model_features(self) -> tuple[str, ...]:
        """The model's input columns, in the order the model expects them."""
        return tuple(column.name for column in self.features if column.used_by_model)

    @property
    def training_columns(self) -> tuple[str, ...]:
        """Columns of the training files: the label first, then the model features (no header)."""
        return (self.label.name, *self.model_features)

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """Columns a raw data file must have (any order, header required)."""
        return (
            self.record_identifier.name,
            self.event_time.name,
            *(column.name for column in self.features),
            self.label.name,
        )

    @property
    def protected_attributes(self) -> tuple[str, ...]:
        """Features declared ``"protected": true``: the segments bias monitoring compares."""
        return tuple(column.name for column in self.features if column.protected)

    def column(self, name: str) -> Column:
        for column in (self.record_identifier, self.event_time, self.label, *self.features):
            if column.name == name:
                return column
        raise KeyError(name)

    def feature_store_definitions(self) -> list[tuple[str, str]]:
        """(name, Feature Store type) of every column a feature group stores: id, event time, features."""
        columns = (self.record_identifier, self.event_time, *self.features)
        return [(column.name, FEATURE_STORE_TYPES[column.type]) for column in columns]


def _column(data: dict[str, Any], where: str) -> Column:
    known = {"name", "type", "description", "minimum", "maximum", "allowed", "used_by_model", "protected"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SchemaError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    if data.get("type") not in _TYPES:
        raise SchemaError(f"{where}.type = {data.get('type')!r}: use one of {', '.join(_TYPES)}")
    if not str(data.get("name", "")).isidentifier():
        raise SchemaError(f"{where}.name = {data.get('name')!r}: use letters, digits and '_'")
    allowed = data.get("allowed")
    return Column(
        name=data["name"],
        type=data["type"],
        description=data.get("description", ""),
        minimum=data.get("minimum"),
        maximum=data.get("maximum"),
        allowed=tuple(allowed) if allowed is not None else None,
        used_by_model=bool(data.get("used_by_model", True)),
        protected=bool(data.get("protected", False)),
    )


def parse_schema(data: dict[str, Any]) -> FeatureSchema:
    schema = FeatureSchema(
        name=data["name"],
        description=data.get("description", ""),
        record_identifier=_column(data["record_identifier"], "record_identifier"),
        event_time=_column(data["event_time"], "event_time"),
        label=_column(data["label"], "label"),
        features=tuple(_column(item, f"features[{i}]") for i, item in enumerate(data["features"])),
    )
    names = [schema.record_identifier.name, schema.event_time.name, schema.label.name]
    names += [column.name for column in schema.features]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SchemaError(f"column names must be unique; repeated: {', '.join(duplicates)}")
    if not schema.model_features:
        raise SchemaError("no feature has used_by_model: true")
    if any(not column.numeric for column in schema.features if column.used_by_model):
        raise SchemaError("model features must be integral or fractional (XGBoost takes numbers)")
    for column in (schema.record_identifier, schema.event_time, schema.label):
        if column.protected:
            raise SchemaError(f"{column.name}: only features can be protected attributes")
    for column in schema.features:
        if column.protected and (not column.used_by_model or not column.allowed or len(column.allowed) < 2):
            raise SchemaError(
                f"{column.name}: a protected attribute needs used_by_model: true and its segments as "
                '"allowed" values (at least two, e.g. [0, 1]); bias monitoring compares those segments'
            )
    return schema


def load_schema(path: Path | None = None) -> FeatureSchema:
    """The schema at ``path``, by default ``SCHEMA_PATH`` (read when called, so tests can point it elsewhere)."""
    return parse_schema(json.loads((path or SCHEMA_PATH).read_text()))
