"""What crosses between convhub and a worker in another Python: plain JSON records.

A toolchain's worker runs another interpreter, with other versions of NumPy and of everything
else, so nothing may travel as a pickle. Calls and their results are encoded here as JSON:
scalars, lists and dicts as themselves; tuples, paths and convhub's own records (Artifact,
TensorSpec, Conversion, Runner, Format, Toolchain) tagged; NumPy arrays in the .npy format
(stable across NumPy versions, read without pickles); functions and classes by their module and
qualified name, imported again on the other side. Anything else is refused with one line saying
what could not cross, rather than turned into something that only looks the same.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import io
import json
from pathlib import Path
from typing import Any, Mapping

TAG = "__convhub__"
# What plans a route stays with the supervisor: a worker only runs hops and runners.
PLANNING = frozenset({"refuse", "notes", "detect", "check_options"})


class WireError(TypeError):
    """A value that cannot cross to another Python."""


def _types() -> dict[str, type]:
    from convhub import types

    return {cls.__name__: cls for cls in (types.Artifact, types.TensorSpec, types.Conversion, types.Runner,
                                          types.Format, types.Toolchain)}


def reference(fn: Any) -> str:
    """'module:qualname' of a module-level function or class, which the other side imports."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise WireError(f"{getattr(fn, '__name__', fn)!r} cannot cross to another Python: "
                        "a toolchain's code must be a function or class defined at module level")
    return f"{module}:{qualname}"


def resolve(ref: str) -> Any:
    module, _, qualname = ref.partition(":")
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def encode(value: Any) -> Any:
    """A JSON-ready form of `value`; WireError names what cannot cross."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [encode(v) for v in value]}
    if isinstance(value, Path):
        return {TAG: "path", "v": str(value)}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: encode(v) for k, v in value.items()}
        return {TAG: "items", "v": [[encode(k), encode(v)] for k, v in value.items()]}
    kind = type(value).__module__.partition(".")[0]
    if kind == "numpy":
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise WireError("an array of Python objects cannot cross to another Python")
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=False)
            return {TAG: "npy", "v": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and type(value).__name__ in _types() and (
            type(value).__module__ == "convhub.types"):
        fields = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name == "model" and item is not None:
                raise WireError("an in-memory model cannot cross to another Python: only its files and facts can")
            if f.init:
                fields[f.name] = None if f.name in PLANNING else encode(item)
        return {TAG: type(value).__name__, "v": fields}
    if callable(value):
        return {TAG: "ref", "v": reference(value)}
    raise WireError(f"a {type(value).__name__} cannot cross to another Python")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {k: decode(v) for k, v in value.items()}
    inner = value["v"]
    if tag == "tuple":
        return tuple(decode(v) for v in inner)
    if tag == "path":
        return Path(inner)
    if tag == "bytes":
        return base64.b64decode(inner)
    if tag == "items":
        return {decode(k): decode(v) for k, v in inner}
    if tag == "npy":
        import numpy as np

        return np.load(io.BytesIO(base64.b64decode(inner)), allow_pickle=False)
    if tag == "ref":
        return resolve(inner)
    cls = _types().get(tag)
    if cls is None:
        raise WireError(f"unknown record {tag!r}")
    return cls(**{k: decode(v) for k, v in inner.items()})


def references(encoded: Any) -> set[str]:
    """Every function or class an encoded value names (their modules must import on the other side)."""
    found: set[str] = set()
    stack = [encoded]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get(TAG) == "ref":
                found.add(item["v"])
            else:
                stack.extend(item.values())
    return found


def json_bytes(encoded: Any) -> bytes:
    return json.dumps(encoded).encode("utf-8")


def dumps(value: Any) -> bytes:
    return json_bytes(encode(value))


def loads(data: bytes) -> Any:
    return decode(json.loads(data))
