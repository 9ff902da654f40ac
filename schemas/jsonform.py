"""Events as JSON from producers in other languages: checked against the Avro schema field by field, with
defaults filled in and every problem named by its path (e.g. `prompt.messages[2].role: missing`).

JSON has no unions or timestamps of its own, so values are taken in their natural JSON shape: a nullable
field is the value or null, a timestamp-micros is an integer of µs or an ISO-8601 string with a zone.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from schemas.errors import EventValidationError
from schemas.times import MAX_US, MIN_US, to_micros

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
MAX_PROBLEMS = 20


def from_json(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    """Return the Avro-ready record, or raise EventValidationError listing up to 20 problems."""
    named: dict[str, Any] = {}
    _collect_names(schema, named)
    problems: list[str] = []
    result = _convert(schema, value, schema["name"], named, problems)
    if problems:
        more = f" (and more; showing {MAX_PROBLEMS})" if len(problems) >= MAX_PROBLEMS else ""
        raise EventValidationError("; ".join(problems[:MAX_PROBLEMS]) + more)
    out: dict[str, Any] = result
    return out


def _collect_names(schema: Any, named: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for s in schema:
            _collect_names(s, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            named[schema["name"]] = schema
        for f in schema.get("fields", []):
            _collect_names(f["type"], named)
        for key in ("items", "values"):
            if key in schema:
                _collect_names(schema[key], named)


def _convert(schema: Any, value: Any, path: str, named: dict[str, Any], problems: list[str]) -> Any:
    if len(problems) >= MAX_PROBLEMS:
        return None
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return _union(schema, value, path, named, problems)
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-micros":
        return _timestamp(value, path, problems)
    if kind == "record":
        return _record(schema, value, path, named, problems)
    if kind == "array":
        if not isinstance(value, list):
            return _bad(problems, path, "an array", value)
        return [_convert(schema["items"], v, f"{path}[{i}]", named, problems) for i, v in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            return _bad(problems, path, "an object", value)
        return {k: _convert(schema["values"], v, f"{path}.{k}", named, problems) for k, v in value.items()}
    if kind == "enum":
        if value not in schema["symbols"]:
            problems.append(f"{path}: {value!r} is not one of {', '.join(schema['symbols'])}")
        return value
    return _primitive(kind, value, path, problems)


def _record(schema: dict[str, Any], value: Any, path: str, named: dict[str, Any], problems: list[str]) -> Any:
    if not isinstance(value, dict):
        return _bad(problems, path, "an object", value)
    fields = {f["name"]: f for f in schema["fields"]}
    for extra in sorted(set(value) - set(fields)):
        problems.append(f"{path}.{extra}: unknown field (not in schema {schema['name']})")
    out = {}
    for name, f in fields.items():
        sub = f"{path}.{name}"
        if name in value:
            out[name] = _convert(f["type"], value[name], sub, named, problems)
        elif "default" in f:
            out[name] = copy.deepcopy(f["default"])  # never hand out the cached schema's own lists
        else:
            problems.append(f"{sub}: missing required field")
    return out


def _union(branches: list[Any], value: Any, path: str, named: dict[str, Any], problems: list[str]) -> Any:
    if value is None:
        if "null" in branches:
            return None
        problems.append(f"{path}: must not be null")
        return None
    candidates = [b for b in branches if b != "null"]
    for branch in candidates:
        trial: list[str] = []
        converted = _convert(branch, value, path, named, trial)
        if not trial:
            return converted
    if len(candidates) == 1:  # the common nullable case: report the real problem
        return _convert(candidates[0], value, path, named, problems)
    problems.append(f"{path}: value fits none of the allowed types")
    return None


def _primitive(kind: str, value: Any, path: str, problems: list[str]) -> Any:
    if kind == "string":
        return value if isinstance(value, str) else _bad(problems, path, "a string", value)
    if kind == "boolean":
        return value if isinstance(value, bool) else _bad(problems, path, "true or false", value)
    if kind in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return _bad(problems, path, "an integer", value)
        low, high = _INT_RANGE[kind]
        if not low <= value <= high:
            problems.append(f"{path}: {value} is out of range for a {kind}")
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _bad(problems, path, "a number", value)
        try:
            return float(value)
        except OverflowError:
            problems.append(f"{path}: {value} is out of range for a {kind}")
            return None
    if kind == "null":
        return None if value is None else _bad(problems, path, "null", value)
    if kind == "bytes":
        return value.encode("utf-8") if isinstance(value, str) else _bad(problems, path, "a string", value)
    problems.append(f"{path}: unsupported schema type {kind}")
    return None


def _timestamp(value: Any, path: str, problems: list[str]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        _in_range(value, str(value) + " µs", path, problems)
        return value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{path}: {value[:40]!r} is not an ISO-8601 timestamp")
            return None
        if when.tzinfo is None:
            problems.append(f"{path}: timestamp {value[:40]!r} has no time zone; use Z or +00:00")
            return None
        # A zone offset can move a date at either end of years 1-9999 out of that range in UTC.
        us = to_micros(when)
        _in_range(us, repr(value[:40]), path, problems)
        return us
    return _bad(problems, path, "an ISO-8601 string or integer microseconds", value)


def _in_range(us: int, shown: str, path: str, problems: list[str]) -> None:
    """Timestamps must be readable back as a UTC datetime (years 1 to 9999)."""
    if not MIN_US <= us <= MAX_US:
        problems.append(f"{path}: {shown} is out of range for a timestamp (years 1 to 9999 in UTC)")


def _bad(problems: list[str], path: str, expected: str, value: Any) -> None:
    problems.append(f"{path}: expected {expected}, got {_json_type(value)}")
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "value")
