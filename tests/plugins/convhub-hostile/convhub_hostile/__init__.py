"""Real misbehaving code for convhub's hostile-input tests: no mocks.

The `toy` format is a JSON file holding a weight matrix (a linear model, y = x @ w), run by a
NumPy runner, so these tests need no framework. Conversions from it to formats named after
what they do: `toy-copy` (healthy), `toy-segv` (dereferences NULL), `toy-abort` (os.abort),
`toy-exit` (sys.exit(0)), `toy-hang` (sleeps), `toy-raise` (raises), `toy-drift` (a different
model: the weights times 1.5, whose explain_drift segfaults), `toy-nan` (NaN weights), `toy-big` (a healthy
folder of many files, slow to publish). `toy-badrun` converts fine but its runner crashes.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
import time
from pathlib import Path

from convhub import hookimpl
from convhub.types import Artifact, Conversion, Format, Runner, TensorSpec, input_facts


def read(thing, options):
    path = Path(thing)
    weights = json.loads((path / "model.json").read_text() if path.is_dir() else path.read_text())["w"]
    return Artifact("toy", path=path, facts=input_facts([TensorSpec("x", (None, len(weights)), "float32")]))


def detect(thing):
    return isinstance(thing, Path) and thing.suffix == ".toy"


class Session:
    def __init__(self, artifact):
        import numpy as np

        path = Path(artifact.path)
        data = json.loads((path / "model.json").read_text() if path.is_dir() else path.read_text())
        self.w = np.asarray(data["w"], dtype="float32")
        self.inputs = [TensorSpec("x", (None, self.w.shape[0]), "float32")]
        self.outputs = ["y"]

    def run(self, feeds):
        return {"y": feeds["x"] @ self.w}


class CrashingSession:
    def __init__(self, artifact):
        ctypes.string_at(0)  # SIGSEGV in the runtime


def segv_explaining(before, artifact, options, feeds):
    """toy-drift's word on where its drift comes from: a crash in the worker."""
    ctypes.string_at(0)


def copy(artifact, destination, options):
    shutil.copy(artifact.path, destination)


def segv(artifact, destination, options):
    destination.write_text("half")
    ctypes.string_at(0)


def abort(artifact, destination, options):
    os.abort()


def exits(artifact, destination, options):
    sys.exit(0)


def hang(artifact, destination, options):
    time.sleep(3600)


def raises(artifact, destination, options):
    raise RuntimeError("this converter always fails")


def _rewrite(artifact, destination, change):
    data = json.loads(Path(artifact.path).read_text())
    data["w"] = [[change(v) for v in row] for row in data["w"]]
    destination.write_text(json.dumps(data))


def drift(artifact, destination, options):
    _rewrite(artifact, destination, lambda v: v * 1.5)  # a different model


def nan(artifact, destination, options):
    _rewrite(artifact, destination, lambda v: float("nan"))


def big(artifact, destination, options):
    destination.mkdir()
    shutil.copy(artifact.path, destination / "model.json")
    blob = os.urandom(1 << 20)
    for i in range(int(os.environ.get("CONVHUB_HOSTILE_BIG_FILES", "200"))):
        (destination / f"shard{i}.bin").write_bytes(blob)


def bad_detect(thing):
    raise ValueError("this detect() is broken")


def bad_refuse(facts):
    raise KeyError("this refuse() is broken")


BEHAVIOURS = {"copy": copy, "segv": segv, "abort": abort, "exit": exits, "hang": hang, "raise": raises,
              "drift": drift, "nan": nan}


@hookimpl
def convhub_formats():
    formats = [Format("toy", "a toy linear model (JSON weights)", read=read, detect=detect, suffix=".toy")]
    formats += [Format(f"toy-{name}", f"toy model, converted by a converter that does '{name}'", suffix=".toy")
                for name in BEHAVIOURS]
    formats.append(Format("toy-big", "toy model in a folder with many shards", directory=True))
    formats.append(Format("toy-badrun", "toy model whose runner crashes", suffix=".toy"))
    formats.append(Format("toy-chain", "a second hop after toy-copy, which fails", suffix=".toy"))
    formats.append(Format("toy-baddetect", "a format whose detect() raises", detect=bad_detect, suffix=".bad"))
    formats.append(Format("toy-badrefuse", "reached by a conversion whose refuse() raises", suffix=".toy"))
    return formats


@hookimpl
def convhub_conversions():
    edges = [Conversion("toy", f"toy-{name}", convert=fn, cost=0.1, explain_drift=segv_explaining if name == "drift"
                        else None) for name, fn in BEHAVIOURS.items()]
    edges.append(Conversion("toy", "toy-big", convert=big, cost=0.1))
    edges.append(Conversion("toy", "toy-badrun", convert=copy, cost=0.1))
    edges.append(Conversion("toy-copy", "toy-chain", convert=raises, cost=0.1))
    edges.append(Conversion("toy", "toy-badrefuse", convert=copy, cost=0.1, refuse=bad_refuse))
    return edges


@hookimpl
def convhub_runners():
    runners = [Runner(name, load=Session, name=f"numpy-{name}")
               for name in ("toy", "toy-copy", "toy-segv", "toy-abort", "toy-exit", "toy-hang", "toy-raise",
                            "toy-chain", "toy-badrefuse", "toy-drift", "toy-nan")]
    runners.append(Runner("toy-big", load=Session, name="numpy-big"))
    runners.append(Runner("toy-badrun", load=CrashingSession, name="crashing-runner"))
    return runners
