"""A small evaluator of the IAM condition operators the guardrails use, for tests.

It follows the IAM policy evaluation rules for these operators: a condition block matches when every
operator matches (AND); a key absent from the request makes a plain operator false and a negated one
(``...Not...``) true; ``ForAnyValue`` is false for an absent key; ``Null`` tests presence.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _same(a: Any, b: Any) -> bool:
    return bool(a == b)


def _operator_matches(operator: str, key: str, expected: Any, request: Mapping[str, Any]) -> bool:
    value = request.get(key)
    expected_values = _as_list(expected)
    if operator == "Null":
        return (value is None) == (str(expected).lower() == "true")
    if operator.startswith("ForAnyValue:"):
        inner = operator.removeprefix("ForAnyValue:")
        if value is None:
            return False
        return any(_operator_matches(inner, key, expected, {key: item}) for item in _as_list(value))
    if value is None:
        return "Not" in operator
    if operator == "Bool":
        return str(value).lower() in [str(e).lower() for e in expected_values]
    if operator in ("ArnEquals", "StringEquals"):
        return any(_same(value, e) for e in expected_values)
    if operator in ("ArnNotEquals", "StringNotEquals"):
        return not any(_same(value, e) for e in expected_values)
    if operator == "StringLike":
        return any(fnmatch.fnmatchcase(str(value), str(e)) for e in expected_values)
    if operator == "StringNotLike":
        return not any(fnmatch.fnmatchcase(str(value), str(e)) for e in expected_values)
    raise NotImplementedError(operator)


def denies(statement: Mapping[str, Any], action: str, request: Mapping[str, Any]) -> bool:
    """Whether the Deny ``statement`` denies ``action`` with the request context ``request``."""
    actions = _as_list(statement["Action"])
    if statement["Effect"] != "Deny" or action not in actions:
        return False
    return all(
        _operator_matches(operator, key, expected, request)
        for operator, checks in statement.get("Condition", {}).items()
        for key, expected in checks.items()
    )
