"""Build the zoo (benchmarks/zoo/models.py) and run `convhub matrix` over it.

    uv run python -m benchmarks.zoo.run                      # every model, every target and mode
    uv run python -m benchmarks.zoo.run --only resnet50,gru --modes float32
    uv run python -m benchmarks.zoo.run --build-only DIR     # just write the models; then
    uv run convhub matrix DIR --markdown docs/compatibility.md

The full run writes docs/compatibility.md and docs/compatibility.json (about two hours on 2 cores).
Each model is written beside its calibration data (NAME.calibration.npz, 64 rows from the
model's own input distribution) and its parity inputs (NAME.inputs.npz, 128 other rows), so
`convhub matrix DIR` on the folder does exactly what this script does.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CALIBRATION_ROWS = 64
PARITY_ROWS = 128  # as many as a quantized check generates (parity.QUANTIZED_BATCH): top-1 agreement means something


def build(names: list[str], folder: Path) -> list[str]:
    """Each model into folder/NAME/, in a fresh process each (a model's framework state, e.g.
    Keras' name counters, must not leak into the next); returns the sources to hand convhub."""
    sources = []
    for name in names:
        target = folder / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _BUILD_ONE, name, str(target)],
            cwd=ROOT, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise SystemExit(f"building {name} failed:\n{tail}")
        source = proc.stdout.strip().splitlines()[-1]
        trained = [line for line in proc.stderr.splitlines() if line.startswith(f"{name}: trained")]
        print(f"built {name} in {time.perf_counter() - started:.1f} s: {source}", *trained, sep="\n  ", file=sys.stderr)
        sources.append(source)
    return sources


_BUILD_ONE = """
import sys
from pathlib import Path
import numpy as np
from benchmarks.zoo.models import MODELS
name, folder = sys.argv[1], Path(sys.argv[2])
model = MODELS[name]
source = model.build(folder)
path = Path(source.rpartition(':')[0] if ':' in Path(source).name else source)
base = path.parent / path.name.split('.')[0]  # what convhub matrix looks for beside the model
rows = model.calibration(%d + %d)
np.savez(f"{base}.calibration.npz", **{k: v[:%d] for k, v in rows.items()})
np.savez(f"{base}.inputs.npz", **{k: v[%d:] for k, v in rows.items()})
print(source)
""" % (CALIBRATION_ROWS, PARITY_ROWS, CALIBRATION_ROWS, CALIBRATION_ROWS)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.zoo.models import MODELS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated model names (default: all)")
    parser.add_argument("--modes", help="passed to convhub matrix --modes")
    parser.add_argument("--to", default="tflite,onnx,tfjs")
    parser.add_argument("--build-only", metavar="DIR", help="write the models into DIR and stop")
    parser.add_argument("--markdown", default=str(ROOT / "docs" / "compatibility.md"))
    parser.add_argument("--json-file", default=str(ROOT / "docs" / "compatibility.json"))
    parser.add_argument("--list", action="store_true", help="list the zoo and stop")
    args = parser.parse_args(argv)

    if args.list:
        for model in MODELS.values():
            print(f"{model.name:24} {model.family:10} {model.description}")
        return 0
    names = [n.strip() for n in args.only.split(",")] if args.only else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"no zoo model {unknown[0]!r} (see --list)")
    if args.build_only:
        build(names, Path(args.build_only))
        return 0
    with tempfile.TemporaryDirectory(prefix="convhub-zoo-") as tmp:
        sources = build(names, Path(tmp))
        cmd = [sys.executable, "-m", "convhub.cli", "matrix", *sources, "--to", args.to,
               "--markdown", args.markdown, "--json-file", args.json_file,
               "--generated-by", "uv run python -m benchmarks.zoo.run" + (f" --only {args.only}" if args.only else "")
               + (f" --modes {args.modes}" if args.modes else "")]
        if args.modes:
            cmd += ["--modes", args.modes]
        return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
