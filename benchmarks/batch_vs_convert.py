"""A batch of 6 models × 3 targets against 6 separate `convhub convert` runs, and the batch
again from its cache, in one run.

    uv run python benchmarks/batch_vs_convert.py [--jobs N]

The six models are the project's examples, each as users hand them over: a .keras file and a
SavedModel folder (examples/keras_cnn.py's helpers), and four `file.py:NAME` references (Keras,
a JAX function, a Flax module, an Orbax module with two signatures). Every run converts each
model to TFLite, ONNX and TF.js and checks every artifact. Goals (issue 13): the batch takes at
most half the time of the separate runs, and the fully cached rerun at most 3 s. The peak
memory of each run (the process and its workers) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mobilenet_vs_official import measured  # the same sampling of a process tree's memory

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
TARGETS = "tflite,onnx,tfjs"
SINGLE = [0]  # bytes of the largest single process seen (mobilenet_vs_official.measured fills it)


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Wall seconds and peak bytes of the process tree (its largest process into SINGLE)."""
    seconds, peak, proc = measured(cmd, env, largest=SINGLE)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return seconds, int(peak * 2**20), proc


def models(folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    code = ("import sys; sys.path.insert(0, 'examples'); import keras_cnn;"
            f" keras_cnn.keras_file({str(folder)!r}); keras_cnn.saved_model({str(folder)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)
    (folder / "keras_cnn.keras").rename(folder / "cnn_file.keras")  # a batch names models after their files
    (folder / "keras_cnn_savedmodel").rename(folder / "cnn_savedmodel")
    examples = ROOT / "examples"
    return [str(folder / "cnn_file.keras"), str(folder / "cnn_savedmodel"),
            f"{examples / 'keras_cnn.py'}:model", f"{examples / 'jax_function.py'}:mlp",
            f"{examples / 'flax_module.py'}:classifier", f"{examples / 'orbax_serving.py'}:serving"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, help="worker processes for both (default: convhub's)")
    args = parser.parse_args()
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sources = models(tmp_path / "models")
        env = {**os.environ, "CONVHUB_CACHE_DIR": str(tmp_path / "cache")}
        rows = []
        separate, separate_peak = 0.0, 0
        for i, source in enumerate(sources):
            seconds, peak, _ = run([str(BIN / "convhub"), "convert", source, "--to", TARGETS,
                                         "-o", str(tmp_path / f"convert{i}"), "-q", *jobs], env)
            separate += seconds
            separate_peak = max(separate_peak, peak)
            print(f"  convhub convert {Path(source.rpartition(':')[0] or source).name}: {seconds:.1f} s", flush=True)
        job = tmp_path / "convhub.toml"
        job.write_text(f"models = {json.dumps(sources)}\ntargets = {json.dumps(TARGETS.split(','))}\n")
        cmd = [str(BIN / "convhub"), "batch", str(job), "-o", str(tmp_path / "out"), "--json", "-q", *jobs]
        batch, batch_peak, proc = run(cmd, env)
        payload = json.loads(proc.stdout)
        assert payload["summary"]["ran"] == 18 and payload["ok"], payload["summary"]
        cached, cached_peak, proc = run(cmd, env)
        again = json.loads(proc.stdout)
        assert again["summary"]["cached"] == 18, again["summary"]
        rows = [("6 × convhub convert (3 targets each)", separate, separate_peak, ""),
                ("convhub batch (6 models × 3 targets)", batch, batch_peak,
                 f"{batch / separate:.2f}× the separate runs (goal ≤ 0.50×)"),
                ("convhub batch again, all cached", cached, cached_peak, "goal ≤ 3 s")]
        print(f"\n{'run':<40} {'wall':>8} {'peak memory':>12}")
        for name, seconds, peak, note in rows:
            print(f"{name:<40} {seconds:7.1f}s {peak / 2**20:9.0f} MiB   {note}")
        per_cell = [c for c in payload["cells"]]
        sizes = sorted(c["bytes"] for c in per_cell if c["bytes"])
        print(f"\nlargest single process (a warm worker with TensorFlow and a model): {SINGLE[0] / 2**20:.0f} MiB")
        print(f"per cell (batch): {batch / len(per_cell):.2f} s of wall time; artifact size median"
              f" {sizes[len(sizes) // 2] / 1e3:.1f} kB, largest {sizes[-1] / 1e3:.1f} kB;"
              f" cache: {sum(sizes) / 1e3:.0f} kB for {len(per_cell)} cells")


if __name__ == "__main__":
    main()
