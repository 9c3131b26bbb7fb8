"""Planning a run, in pure Python: targets, routes, options per target, and the hops to convert.

Nothing here imports a framework, so a mistake in the command line or the call (a pair with no
route, an option no hop on a route reads, an option that fits only some targets) fails in
milliseconds, before anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from convhub.errors import UsageError
from convhub.graph import Route
from convhub.results import HopKey
from convhub.types import Conversion, Format

# Options of the run itself; the rest are read by the source's format or by an edge on a route.
GENERAL_OPTIONS = {"seed"}


@dataclass
class Target:
    """One target of a run: where it goes, by which route, with which options."""

    format: str
    route: Route
    destination: Path | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> list[HopKey]:
        """The key of each hop on the route: the hops before it and the options each reads.
        Routes whose hops have equal keys share them; a hop with other options is its own."""
        keys: list[HopKey] = []
        key: HopKey = ()
        for edge in self.route.hops:
            read = tuple(sorted((k, repr(self.options[k])) for k in edge.options if k in self.options))
            key = (*key, (edge.name, read))
            keys.append(key)
        return keys


def is_set(value: Any) -> bool:
    return value is not None and value is not False


def check_source_options(options: Mapping[str, Any], source: Format, formats: Mapping[str, Format]) -> None:
    """A reading option (`signature`) for a source whose format does not read it is a mistake."""
    readers = {k for f in formats.values() for k in f.options}
    for key, value in options.items():
        if key in readers and key not in source.options and key not in GENERAL_OPTIONS and is_set(value):
            takes = ", ".join(sorted(f.name for f in formats.values() if key in f.options))
            raise UsageError(f"option {key!r} does not apply to a {source.name} source (it is for {takes} sources)")


def options_per_target(options: Mapping[str, Any], routes: Mapping[str, Route],
                       source_options: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Each target's options: the general ones, the unscoped ones and its own `TARGET.KEY` ones.

    An unscoped option must be read by every target's route (with one target: by its route);
    in a run with several targets, one that only some routes read must be scoped, so that
    `--quantize int8 --to tflite,onnx` is not silently half-applied.
    """
    reads = {t: {k for hop in r.hops for k in hop.options} for t, r in routes.items()}
    per_target: dict[str, dict[str, Any]] = {t: {} for t in routes}
    for key, value in options.items():
        scope, dot, name = key.partition(".")
        if dot:
            if scope not in routes:
                raise UsageError(f"option {key!r} is for {scope!r}, which is not a target of this run"
                                 f" (targets: {', '.join(routes)})")
            if name not in reads[scope] and name not in GENERAL_OPTIONS:
                raise UsageError(f"option {name!r} is not used by any conversion on the route {routes[scope]}")
            per_target[scope][name] = value
            continue
        if key in GENERAL_OPTIONS or key in source_options or not is_set(value):
            continue
        using = [t for t in routes if key in reads[t]]
        if not using:
            routes_text = " and ".join(str(r) for r in routes.values())
            raise UsageError(f"option {key!r} is not used by any conversion on the route {routes_text}")
        if len(using) < len(routes):
            others = ", ".join(t for t in routes if t not in using)
            raise UsageError(
                f"option {key!r} applies to {', '.join(using)} but not to {others} in this run;"
                f" scope it to the targets it is for, e.g. --option {using[0]}.{key}={value}"
            )
    common = {k: v for k, v in options.items() if "." not in k}
    chosen = {t: {**common, **per_target[t]} for t in routes}
    for target, route in routes.items():  # values that cannot go together, before anything loads
        for hop in route.hops:
            if hop.check_options is not None:
                hop.check_options(chosen[target])
    return chosen


@dataclass(frozen=True)
class Hop:
    edge: Conversion
    parent: HopKey  # () is the source
    options: Mapping[str, Any]  # those of the first target that needs it: equal for what the edge reads


def hops_of(targets: Sequence[Target]) -> dict[HopKey, Hop]:
    """Every distinct hop of the run, in route order, each with the hop it starts from."""
    hops: dict[HopKey, Hop] = {}
    for target in targets:
        for edge, key in zip(target.route.hops, target.keys):
            hops.setdefault(key, Hop(edge, key[:-1], target.options))
    return hops
