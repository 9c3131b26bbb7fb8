"""The routing graph: formats are nodes, conversions are edges. Pure Python, imports no framework."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from convhub.errors import NoRouteError
from convhub.types import Conversion

MAX_HOPS = 6


@functools.lru_cache(maxsize=None)
def module_available(name: str) -> bool:
    """Whether `name` can be imported, found without importing it (only parents of dotted names)."""
    top = name.partition(".")[0]
    try:
        if importlib.util.find_spec(top) is None:
            return False
        return top == name or importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(names: Iterable[str]) -> list[str]:
    return [n for n in names if not module_available(n)]


@dataclass(frozen=True)
class Route:
    """A chain of conversions, source first."""

    source: str
    hops: tuple[Conversion, ...]

    @property
    def formats(self) -> list[str]:
        return [self.source, *(h.target for h in self.hops)]

    @property
    def cost(self) -> float:
        return sum(h.cost for h in self.hops)

    @property
    def lossy(self) -> bool:
        return any(h.lossy for h in self.hops)

    def __str__(self) -> str:
        # A hop that is not the plain source->target edge is named: two routes through the same
        # formats can differ in how they convert (jax->savedmodel vs jax->savedmodel-tf-ops).
        text = self.source
        for hop in self.hops:
            text += f" → {hop.target}" + (f" [{hop.name}]" if hop.name != f"{hop.source}->{hop.target}" else "")
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.formats,
            "cost": round(self.cost, 3),
            "lossy": self.lossy,
            "hops": [
                {"from": h.source, "to": h.target, "conversion": h.name, "plugin": h.plugin, "lossy": h.lossy}
                for h in self.hops
            ],
        }


class RouteGraph:
    def __init__(self, conversions: Iterable[Conversion], on_broken: Callable[[str, str], None] | None = None):
        self.conversions = list(conversions)
        self.on_broken = on_broken  # told when a plugin's refuse() raises: (plugin, reason)

    def blocked(self, edge: Conversion, facts: Mapping[str, Any] | None = None) -> str | None:
        """Why this edge cannot be used for a model with these facts, or None if it can."""
        missing = missing_modules(edge.requires)
        if missing and edge.toolchain is not None:  # then it runs in the toolchain's own environment
            from convhub.toolchains import unavailable

            missing = [] if unavailable(edge.toolchain) is None else missing
        if missing:
            return f"needs {', '.join(repr(m) for m in missing)}, not installed"
        if facts is not None and edge.refuse is not None:
            try:
                reason = edge.refuse(facts)
                if reason is not None and not isinstance(reason, str):
                    raise TypeError(f"it returned a {type(reason).__name__}, not a reason or None")
            except Exception as exc:  # noqa: BLE001 - a plugin's bug blocks its own edge, nothing else
                why = f"refuse() raised {type(exc).__name__}: {exc}"
                if self.on_broken is not None:
                    self.on_broken(edge.plugin, f"{edge.name} {why}")
                return f"is unusable: {why}"
            if reason:
                return f"refuses this model: {reason}"
        return None

    def _paths(self, source: str, target: str, facts: Mapping[str, Any] | None, check: bool) -> list[Route]:
        """Every simple path from source to target, cheapest first; with `check`, over usable edges only.

        Facts flow along a path: each edge sees the source's facts updated by what the edges
        before it produce.
        """
        out: list[Route] = []

        def walk(node: str, hops: tuple[Conversion, ...], seen: frozenset[str], known: dict[str, Any] | None) -> None:
            if node == target and hops:
                out.append(Route(source, hops))
                return
            if len(hops) >= MAX_HOPS:
                return
            for edge in self.conversions:
                if edge.source != node or edge.target in seen:
                    continue
                if check and self.blocked(edge, known) is not None:
                    continue
                after = None if known is None else {**known, **edge.produces}
                walk(edge.target, hops + (edge,), seen | {edge.target}, after)

        walk(source, (), frozenset({source}), None if facts is None else dict(facts))
        return sorted(out, key=lambda r: (r.cost, len(r.hops), r.formats))

    def routes(self, source: str, target: str, facts: Mapping[str, Any] | None = None,
               via: str | None = None) -> list[Route]:
        """The usable routes, cheapest first (empty when there is none); with `via`, only those
        passing through that format.

        Without facts, edges still see the facts the hops before them produce (a native JAX
        export always holds XlaCallModule), so planning without a model is not over-optimistic.
        """
        found = self._paths(source, target, facts or {}, check=True)
        return [r for r in found if via in r.formats[1:-1]] if via else found

    def best(self, source: str, target: str, facts: Mapping[str, Any] | None = None, via: str | None = None) -> Route:
        """The cheapest usable route (through `via`, if given); NoRouteError explains why there is none."""
        if source == target:
            raise NoRouteError(f"{source} → {target}: source and target are the same format")
        found = self.routes(source, target, facts, via)
        if found:
            return found[0]
        if via:
            others = self.routes(source, target, facts)
            raise NoRouteError(
                f"no usable route from {source} to {target} goes through {via}",
                hint="routes that can be used: " + "; ".join(str(r) for r in others) if others
                else "no route can be used: " + "; ".join(self.explain(source, target, facts)))
        reasons = self.explain(source, target, facts)
        raise NoRouteError(f"no route from {source} to {target}: " + "; ".join(reasons), reasons)

    def unusable(self, source: str, target: str, facts: Mapping[str, Any] | None = None) -> list[tuple[Route, str]]:
        """Each route that exists but cannot be used, with the first hop that blocks it and why."""
        out = []
        for route in self._paths(source, target, None, check=False):
            known = dict(facts or {})
            for edge in route.hops:
                why = self.blocked(edge, known)
                if why:
                    out.append((route, f"{edge.source} → {edge.target} ({edge.plugin or 'unknown plugin'}) {why}"))
                    break
                known = {**known, **edge.produces}
        return out

    def explain(self, source: str, target: str, facts: Mapping[str, Any] | None = None) -> list[str]:
        """Why the routes from source to target cannot be used, one reason per blocking hop."""
        if not self._paths(source, target, None, check=False):
            return [f"no chain of conversions leads from {source} to {target}"]
        return list(dict.fromkeys(reason for _, reason in self.unusable(source, target, facts)))
