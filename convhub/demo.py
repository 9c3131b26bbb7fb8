"""`convhub demo`: build the example models in code and convert each through every route.

The examples live in the `examples/` folder of a convhub checkout; each demo source names a
function there that returns a model object, or writes a model into a folder and returns its path.
"""

from __future__ import annotations

import tempfile
from typing import Any, Callable
from dataclasses import dataclass
from pathlib import Path

from convhub import pyref, report, workers
from convhub.pipeline import read_source, run
from convhub.errors import ConvhubError, NoRouteError, UsageError
from convhub.plugins import default_registry
from convhub.jsonout import document, dump_json
from convhub.console import show
from convhub.table import Column, number, table


@dataclass(frozen=True)
class DemoSource:
    label: str
    reference: str  # file:function in examples/
    writes_file: bool  # the function takes a directory and returns a path


SOURCES = [
    DemoSource("Keras file (.keras)", "keras_cnn.py:keras_file", True),
    DemoSource("in-memory keras.Model", "keras_cnn.py:model", False),
    DemoSource("SavedModel directory", "keras_cnn.py:saved_model", True),
    DemoSource("JAX function (JaxFunction)", "jax_function.py:mlp", False),
    DemoSource("Flax linen module", "flax_module.py:classifier", False),
    DemoSource("Orbax JaxModule + ServingConfigs", "orbax_serving.py:serving", False),
]


def examples_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "examples"
    if not here.is_dir():
        raise UsageError("the demo needs the examples/ folder of a convhub checkout")
    return here


def make_source(source: DemoSource, workdir: Path) -> Any:
    """A file the example writes (built in a worker, so this process loads no framework), or
    the example's reference, which each conversion's worker imports."""
    reference = f"{examples_dir() / source.reference}"
    if not source.writes_file:
        return reference
    return workers.shared_pool().call(_write_example, (reference, str(workdir)))


def _write_example(reference: str, workdir: str) -> Path:
    file, _, name = reference.rpartition(":")
    return Path(getattr(pyref.import_module(file), name)(workdir))


def main(out: str | None = None, as_json: bool = False, progress: Callable[[str], None] = lambda msg: None) -> int:
    registry = default_registry()
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="convhub-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    payload: list[dict[str, Any]] = []
    results: list[Any] = []
    labels: list[str] = []
    notes: list[str] = []
    failures = 0
    for i, source in enumerate(SOURCES):
        progress(f"building {source.label} from examples/{source.reference}")
        model = make_source(source, root)
        source_format = registry.formats[read_source(registry, model).format]
        targets = sorted(f for f in registry.formats if f != source_format.name and registry.graph.routes(source_format.name, f))
        for target in targets:
            fmt = registry.formats[target]
            output = root / f"{i}-{source_format.name}-to-{target}{fmt.suffix}"
            progress(f"{source.label} → {target}")
            try:
                result = run(model, target, output, force=True, progress=lambda m: None)
            except NoRouteError as exc:  # this model's facts rule the pair out: said, not failed
                rows.append([source.label, target, "", "", "no route", "see below"])
                notes.append(f"no route for {source.label} → {target}:\n" + "".join(f"  - {r}\n" for r in exc.reasons))
                payload.append({"example": source.label, "target": target, "ok": None, "no_route": exc.reasons})
                continue
            except ConvhubError as exc:
                failures += 1
                rows.append([source.label, target, "", "", "ERROR", str(exc)])
                payload.append({"example": source.label, "target": target, "ok": False, "error": str(exc)})
                continue
            failures += not result.ok
            results.append(result)
            labels.append(source.label)
            diffs = [p.max_abs_diff for p in result.parity if p.checked and p.max_abs_diff is not None]
            worst = max(diffs, default=None)
            rows.append([
                source.label, target, " → ".join(result.route.formats), number(worst),
                "ok" if result.ok else "FAILED", f"{result.seconds:.1f}s" if result.ok else result.error,
            ])
            payload.append({"example": source.label, **result.to_json()})
    grid = table([Column("source"), Column("target", wrap=False), Column("route"),
                  Column("max abs diff", figure=True), Column("parity", status=True, wrap=False), Column("time")], rows)
    text = "\n".join(notes).rstrip()
    html = report.write(results, root / "report.html", labels)
    if as_json:
        print(dump_json(document("demo", {"ok": failures == 0, "conversions": payload, "output_dir": str(root),
                                          "report": str(html)})))
        show(grid, *([text] if text else []), stderr=True)
    else:
        done = [r for r in rows if r[4] != "no route"]
        show(grid, *([text] if text else []), f"\n{len(done) - failures}/{len(done)} conversions passed"
             f" ({len(rows) - len(done)} without a route); models in {root}; parity report {html}")
    return 0 if failures == 0 else 1
