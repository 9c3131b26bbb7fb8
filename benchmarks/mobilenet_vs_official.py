"""keras.applications MobileNetV3Small (96×96, random live weights) to TFLite, ONNX and TF.js:
convhub against the official tools run by hand, in one run, with wall time and peak memory.

    uv run python benchmarks/mobilenet_vs_official.py [--repeat N] [--json]

Rows:
- official sequence: the SavedModel export a user writes (`model.export`), then `tflite_convert`,
  `python -m tf2onnx.convert` and `tensorflowjs_converter`, one process each, as a user runs them.
- convhub --no-check: `convhub convert --to tflite,onnx,tfjs` converting only (the same work).
- convhub: the same with its parity check of every artifact in LiteRT, onnxruntime and TF.js in
  Node.js (work the official tools do not do at all). Goal: ≤ 0.40× the official sequence.
- library 1st / 2nd: two `convhub.convert(...)` calls in one Python process; the second reuses the
  warm workers and must pay no framework import. Goal: 2nd ≤ 0.5× the 1st.
Peak memory is the largest sum of the resident memory of a process and all its children,
sampled every 50 ms (psutil).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

BUILD = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras, numpy as np
keras.utils.set_random_seed(0)
model = keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None, classes=10)
# Live weights: each BatchNormalization takes its statistics from one forward pass on random
# images (momentum 0: the moving statistics become the batch's), so activations keep their
# scale through the network instead of exploding or vanishing as with the initial (0, 1) stats.
images = np.random.default_rng(0).uniform(0, 255, (16, 96, 96, 3)).astype("float32")
for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.0
model(images, training=True)
for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.99
probe = keras.Model(model.input, model.get_layer(index=len(model.layers) - 2).output)
out = np.asarray(probe(images[:4], training=False)).reshape(4, -1)
print(f"pre-softmax activations: std across inputs {out.std(axis=0).mean():.3g}, magnitude {np.abs(out).mean():.3g}")
model.save(sys.argv[1])
"""

EXPORT = "import keras, sys; keras.saving.load_model(sys.argv[1]).export(sys.argv[2], format='tf_saved_model', verbose=False)"

LIBRARY = """
import json, sys, time
import convhub
times = []
for out in sys.argv[2:4]:
    start = time.perf_counter()
    results = convhub.convert(sys.argv[1], to=["tflite", "onnx", "tfjs"], output=out)
    times.append(time.perf_counter() - start)
convhub.shutdown()
print(json.dumps(times))
"""


def measured(cmd: list[str], env: dict | None = None, largest: list[int] | None = None
             ) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, peak MiB of the process tree, and the finished process; `largest[0]` gets
    the peak bytes of its largest single process (a warm worker), when given."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                tree = [proc, *proc.children(recursive=True)]
                sizes = [p.memory_info().rss for p in tree if p.is_running()]
                peak[0] = max(peak[0], sum(sizes))
                if largest is not None:
                    largest[0] = max(largest[0], *sizes)
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join()
    completed = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    return time.perf_counter() - start, peak[0] / 2**20, completed


def check(step: str, proc: subprocess.CompletedProcess) -> None:
    if proc.returncode not in (0,):
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        print(f"{step} FAILED (exit {proc.returncode}):\n{tail}", file=sys.stderr)


def official(model: Path, out: Path) -> tuple[float, float]:
    out.mkdir(parents=True)
    saved = out / "saved_model"
    steps = [
        # The export with TF_ENABLE_ONEDNN_OPTS=0: with oneDNN's rewrites the SavedModel keeps a
        # _FusedConv2D(_fusedhardswish) that tensorflowjs_converter's output cannot run.
        ([sys.executable, "-c", EXPORT, str(model), str(saved)], {**ENV, "TF_ENABLE_ONEDNN_OPTS": "0"}),
        ([str(BIN / "tflite_convert"), f"--saved_model_dir={saved}", f"--output_file={out / 'm.tflite'}"], None),
        ([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--output", str(out / "m.onnx"),
          "--opset", "17"], None),
        ([str(BIN / "tensorflowjs_converter"), "--input_format=tf_saved_model", str(saved), str(out / "m_tfjs")], None),
    ]
    seconds, peak = 0.0, 0.0
    for cmd, env in steps:
        s, p, proc = measured(cmd, env)
        check(Path(cmd[0]).name if "-c" not in cmd else "export", proc)
        seconds, peak = seconds + s, max(peak, p)
    return seconds, peak


def convhub_cli(model: Path, out: Path, *flags: str) -> tuple[float, float, dict]:
    s, p, proc = measured([str(BIN / "convhub"), "convert", str(model), "--to", "tflite,onnx,tfjs", "-o", str(out),
                           "--json", "-q", *flags])
    check("convhub", proc)
    return s, p, json.loads(proc.stdout) if proc.stdout.strip() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each row; medians are printed")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {}
    parity = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "mobilenet_v3_small.keras"
        build = subprocess.run([sys.executable, "-c", BUILD, str(model)], capture_output=True, text=True, env=ENV)
        if build.returncode != 0:
            sys.exit(f"building the model failed:\n{build.stderr[-2000:]}")
        print(build.stdout.strip(), file=sys.stderr)
        for i in range(args.repeat):
            rows.setdefault("official sequence", []).append(official(model, tmp / f"official{i}"))
            s, p, _ = convhub_cli(model, tmp / f"nocheck{i}", "--no-check")
            rows.setdefault("convhub --no-check", []).append((s, p))
            s, p, payload = convhub_cli(model, tmp / f"check{i}")
            rows.setdefault("convhub (with parity check)", []).append((s, p))
            parity = {r["target"]: (r["ok"], max((e["max_abs_diff"] or 0) for e in r["parity"]) if r["parity"] else None,
                                    r["error"]) for r in payload.get("results", [])}
            s, p, proc = measured([sys.executable, "-c", LIBRARY, str(model), str(tmp / f"lib{i}a"), str(tmp / f"lib{i}b")])
            check("library", proc)
            first, second = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else (float("nan"),) * 2
            rows.setdefault("library 1st convert", []).append((first, p))
            rows.setdefault("library 2nd convert", []).append((second, p))
    medians = {k: (statistics.median(s for s, _ in v), statistics.median(p for _, p in v)) for k, v in rows.items()}
    base = medians["official sequence"][0]
    ratios = {
        "convhub / official (with parity check)": medians["convhub (with parity check)"][0] / base,
        "convhub / official (converting only)": medians["convhub --no-check"][0] / base,
        "library 2nd / 1st": medians["library 2nd convert"][0] / medians["library 1st convert"][0],
    }
    if args.json:
        print(json.dumps({"repeat": args.repeat, "rows": {k: {"seconds": s, "peak_mib": p} for k, (s, p) in medians.items()},
                          "ratios": ratios, "parity": parity}, indent=2))
        return
    print(f"{'step':<30} {'seconds':>8} {'peak MiB':>9}   ({args.repeat} run(s), medians)")
    for name, (seconds, peak) in medians.items():
        print(f"{name:<30} {seconds:8.1f} {peak:9.0f}")
    print(f"convhub / official, with its parity check: {ratios['convhub / official (with parity check)']:.2f}x (goal ≤ 0.40)")
    print(f"convhub / official, converting only:       {ratios['convhub / official (converting only)']:.2f}x")
    print(f"library: 2nd convert / 1st:                {ratios['library 2nd / 1st']:.2f}x (goal ≤ 0.5)")
    for target, (ok, worst, error) in parity.items():
        print(f"parity {target:<7} {'ok' if ok else 'FAILED'}  max abs diff {worst:.3g}" + (f"  ({error})" if error else ""))


if __name__ == "__main__":
    main()
