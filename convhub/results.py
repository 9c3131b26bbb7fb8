"""What a run did, as records: one outcome per hop, and the per-target and per-check views of them.

The terminal summary, `--json`, the HTML report and the library's return values are all views
of these records; nothing else keeps state about a run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convhub import parity
from convhub.graph import Route
from convhub.jsonout import jsonable
from convhub.types import Artifact, Conversion


class HopStatus(enum.Enum):
    CONVERTED = "converted"
    FAILED = "failed"  # the converter raised, crashed, exited or hung
    SKIPPED = "skipped"  # an earlier hop on its route failed


class CheckStatus(enum.Enum):
    PASSED = "passed"
    DRIFTED = "drifted"  # ran, and differs from the source beyond tolerance (or could not be run)
    UNCHECKED = "unchecked"  # no runtime here can run it
    NOT_RUN = "not run"  # the check was switched off, or its hop did not convert

    @classmethod
    def of(cls, entry: parity.ParityEntry | None) -> CheckStatus:
        if entry is None:
            return cls.NOT_RUN
        if not entry.checked:
            return cls.UNCHECKED
        return cls.PASSED if entry.passed else cls.DRIFTED


@dataclass
class ArtifactRecord:
    format: str
    path: Path | None  # None for an intermediate that was not kept
    bytes: int
    plugin: str
    conversion: str
    seconds: float  # the hop's wall time in convhub: waiting for a worker, reading the source, converting
    facts: dict[str, Any] = field(default_factory=dict)  # what the hop reported about what it wrote
    converter_seconds: float | None = None  # the converter's own call alone
    read_seconds: float | None = None  # reading the source into the hop's worker first

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": str(self.path) if self.path else None,
            "bytes": self.bytes,
            "plugin": self.plugin,
            "conversion": self.conversion,
            "seconds": round(self.seconds, 3),
            "converter_seconds": None if self.converter_seconds is None else round(self.converter_seconds, 3),
            "read_seconds": None if self.read_seconds is None else round(self.read_seconds, 3),
            "facts": jsonable(self.facts),
        }


# The hops up to this one, each (conversion name, the options it reads as (key, repr) pairs):
# equal keys convert once.
HopKey = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


@dataclass
class HopOutcome:
    """One hop of the run: converted once, however many routes share it."""

    key: HopKey
    edge: Conversion | None  # None for an artifact checked but not converted (`convhub check`)
    status: HopStatus
    artifact: Artifact | None = None
    record: ArtifactRecord | None = None
    error: str = ""
    check: parity.ParityEntry | None = None

    @property
    def check_status(self) -> CheckStatus:
        return CheckStatus.of(self.check)


@dataclass
class ConversionResult:
    """What converting to one target did: the route, each artifact, each parity check."""

    source: str
    route: Route
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    parity: list[parity.ParityEntry] = field(default_factory=list)
    output: Path | None = None
    seed: int | None = 0
    inputs: str = "random"  # "realistic" (a quantized route's, docs/parity.md) or the user's .npz
    facts: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    failed_hop: bool = False  # a converter failed (ConversionError), rather than the check (ParityError)
    seconds: float = 0.0
    provenance: dict[str, Any] | None = None  # the published output's record (its sidecar, convhub.provenance)
    source_bytes: int | None = None  # the source's size on disk, when it is a file or folder
    source_latency: dict[str, Any] | None = None  # --benchmark: the source's latency in its own runtime

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def target(self) -> str:
        return self.route.formats[-1]

    @property
    def weak_evidence(self) -> list[str]:
        return [w for p in self.parity for w in (getattr(p, "weak_evidence", None) or [])]

    def __repr__(self) -> str:  # the fields are long; this is what a person wants to see
        worst = max((p.max_abs_diff for p in self.parity if p.max_abs_diff is not None), default=None)
        state = ("ok" + (f", max abs diff {worst:.2g}" if worst is not None else "")) if self.ok \
            else f"FAILED: {_shorten(self.error, 80)}"
        return f"<ConversionResult {' → '.join(self.route.formats)} → {self.output or 'not written'}: {state}>"

    def summary(self, width: int | None = None) -> str:
        """The table and verdict `convhub convert` prints, as plain text (`width` columns at most)."""
        from convhub import summary

        return summary.text([self], width)

    def _repr_html_(self) -> str:
        from convhub import summary

        return summary.to_html([self])

    def raise_for_status(self) -> ConversionResult:
        """Raise ConversionError (a converter failed) or ParityError (an artifact drifted, or the
        final one could not be checked), each with `.result`; return self when all went well."""
        from convhub.errors import ConversionError, ParityError

        if self.ok:
            return self
        if not self.failed_hop:
            raise ParityError(self.error, self)
        error = ConversionError(self.error)
        error.result = self
        raise error

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "target": self.target,
            "route": self.route.formats,
            "hops": self.route.to_json()["hops"],
            "artifacts": [a.to_json() for a in self.artifacts],
            "parity": [p.to_json() for p in self.parity],
            "output": str(self.output) if self.output else None,
            "seed": self.seed,
            "inputs": self.inputs,
            "facts": jsonable(self.facts),
            "error": self.error or None,
            "seconds": round(self.seconds, 3),
            "source_bytes": self.source_bytes,
            "source_latency": self.source_latency,
            "provenance": jsonable(self.provenance),
        }


class Results(list[ConversionResult]):
    """The results of a conversion to several targets, in the order asked: a list, that also
    sums itself up like one result does."""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    def __repr__(self) -> str:
        ok = sum(r.ok for r in self)
        return f"<Results {ok}/{len(self)} ok: {', '.join(f'{r.target} ' + ('ok' if r.ok else 'FAILED') for r in self)}>"

    def summary(self, width: int | None = None) -> str:
        from convhub import summary

        return summary.text(self, width)

    def _repr_html_(self) -> str:
        from convhub import summary

        return summary.to_html(self)

    def raise_for_status(self) -> Results:
        """Raise for the first result that failed (see ConversionResult.raise_for_status)."""
        for result in self:
            result.raise_for_status()
        return self


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_for(route: Route, outcomes: list[HopOutcome], source: Artifact, check: bool, seed: int | None,
               inputs: str) -> ConversionResult:
    """The view of one target: its route's outcomes, and the first thing that went wrong on it."""
    result = ConversionResult(
        source=source.format, route=route, seed=seed, inputs=inputs, facts=dict(source.facts),
        artifacts=[o.record for o in outcomes if o.record is not None],
        parity=[o.check for o in outcomes if o.check is not None],
    )
    failed = next((o for o in outcomes if o.status is not HopStatus.CONVERTED), None)
    if failed is not None:
        edge = failed.edge
        result.error = failed.error or (f"{edge.source} → {edge.target} did not run" if edge else "it did not run")
        result.failed_hop = True
    elif check:
        # An intermediate no runtime could check is tolerated; an unchecked final artifact is not.
        last = len(result.parity) - 1
        checked = [o for o in outcomes if o.check is not None]
        blame = [
            blame_for(entry, result.parity[i - 1] if i else None, _advice(checked[i]))
            for i, entry in enumerate(result.parity)
            if (entry.checked and not entry.passed) or (not entry.checked and i == last)
        ]
        if not result.parity:
            blame = ["the check did not run"]
        result.error = "; ".join(blame)
    return result


def _advice(outcome: HopOutcome) -> str:
    """What the hop that wrote this artifact said to try if it drifts (its `if_drifted` fact)."""
    facts = outcome.record.facts if outcome.record is not None else {}
    return str(facts.get("if_drifted") or "")


def blame_for(entry: parity.ParityEntry, before: parity.ParityEntry | None, advice: str = "") -> str:
    """Say which output failed and, when the hop before it still matched the source, which hop
    added the error, where in the model it comes from (when that hop could tell), and what that
    hop advises for a drift (e.g. calibrating on real data)."""
    if not entry.checked:
        return f"{entry.format}: {entry.reason}"
    where = f"{entry.format}"
    added_here = entry.added_after(before)
    if entry.previous and added_here and entry.vs_previous and not all(d.passed for d in entry.vs_previous):
        where += f" (the error appears in the {entry.previous} → {entry.format} hop)"
    drifted = bool(entry.outputs)  # values were compared: not a runtime that failed to run it
    cause = f"; {entry.cause}" if entry.cause and added_here else ""
    return f"{where}: {entry.reason}{cause}" + (f" ({advice})" if advice and added_here and drifted else "")


@dataclass
class CheckResult:
    """`convhub check`: artifacts compared with a reference, nothing converted."""

    reference: Artifact
    parity: list[parity.ParityEntry]
    candidates: list[Artifact]
    seed: int | None = 0
    inputs: str = "random"
    seconds: float = 0.0
    source_latency: dict[str, Any] | None = None  # --benchmark: the reference's latency in its own runtime
    source_bytes: int | None = None  # the reference's size on disk, when it is a file or folder

    @property
    def ok(self) -> bool:
        return bool(self.parity) and all(p.checked and p.passed for p in self.parity)

    @property
    def error(self) -> str:
        return "; ".join(f"{p.format} ({c.path}): {p.reason}" for p, c in zip(self.parity, self.candidates) if not p.passed)

    def __repr__(self) -> str:
        return f"<CheckResult {len(self.candidates)} against {self.reference.format}: {'ok' if self.ok else 'FAILED'}>"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reference": {"format": self.reference.format, "path": str(self.reference.path) if self.reference.path else None},
            "candidates": [{"format": c.format, "path": str(c.path) if c.path else None} for c in self.candidates],
            "parity": [p.to_json() for p in self.parity],
            "seed": self.seed,
            "inputs": self.inputs,
            "facts": jsonable(self.reference.facts),
            "error": self.error or None,
            "seconds": round(self.seconds, 3),
            "source_latency": self.source_latency,
            "source_bytes": self.source_bytes,
        }
