"""JSON for --json and reports: plain, strict, and light to import (listing commands use it)."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping


def jsonable(value: Any, strict: bool = False) -> Any:
    """Plain JSON: objects with to_json() become theirs, NaN and infinities become null, and
    anything else becomes its str() (or, with strict, a TypeError)."""
    if hasattr(value, "to_json"):
        return jsonable(value.to_json(), strict)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, strict) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, strict) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if strict:
        raise TypeError(f"{type(value).__name__} {value!r} is not JSON")
    return str(value)


def dump_json(payload: Any) -> str:
    """Strict JSON (no NaN or Infinity, which many parsers reject): such figures become null."""
    return json.dumps(jsonable(payload), indent=2, allow_nan=False)


# The version of the --json schema (docs/convhub.schema.json): raised when a field is removed or
# changes meaning; adding a field or a command keeps it.
SCHEMA_VERSION = 1


def document(command: str | None, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Every --json object of every command: the schema version and the command first, then the
    command's own fields (see docs/json.md for how a new command adds its definition)."""
    return {"schema_version": SCHEMA_VERSION, "command": command, **payload}
