"""`convhub convert --benchmark` against LiteRT's own benchmark tool, on one .tflite, in one run:
do convhub's latency figures agree with the official ones?

    uv run python benchmarks/latency_vs_official.py [--threads N]

keras.applications MobileNetV3Small (96×96, random weights, built in code) is converted to TFLite
and ONNX with `--benchmark`; then `python -m ai_edge_litert.tools.benchmark_litert_model` (LiteRT's
Python port of benchmark_model, shipped in ai-edge-litert) times the same .tflite with the same
number of warmup and timed runs. ONNX has no official timing tool in its Python wheels; its row is
convhub's alone. Batch 1 for both. LiteRT's tool runs 1 thread unless told; convhub keeps each
runtime's default, so the tool is run both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

BUILD = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
keras.utils.set_random_seed(0)
keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None, classes=10).save(sys.argv[1])
"""


def official(tflite: Path, runs: int, warmup: int, threads: int | None, work: Path) -> dict:
    result = work / f"litert-{threads}.json"
    args = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", "--model", str(tflite),
            "--num_runs", str(runs), "--warmup_runs", str(warmup), "--result_json", str(result)]
    if threads:
        args += ["--num_threads", str(threads)]
    subprocess.run(args, check=True, capture_output=True, env=ENV, timeout=600)
    return json.loads(result.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for the official tool's 2nd run")
    args = parser.parse_args()
    from convhub import benchmark

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "mobilenet.keras"
        subprocess.run([sys.executable, "-c", BUILD, str(model)], check=True, env=ENV, capture_output=True, timeout=600)
        proc = subprocess.run([str(BIN / "convhub"), "convert", str(model), "--to", "tflite,onnx", "-o", str(work / "out"),
                               "--benchmark", "--json", "-q"], capture_output=True, text=True, env=ENV, timeout=1800)
        payload = json.loads(proc.stdout)
        results = {r["target"]: r for r in payload["results"]}
        ours = results["tflite"]["parity"][-1]["latency"]
        rows = [("keras (source), convhub", results["tflite"]["source_latency"])]
        rows += [(f"{target}, convhub", results[target]["parity"][-1]["latency"]) for target in ("tflite", "onnx")]
        print(f"{'MobileNetV3Small 96x96, batch 1':36} {'p50':>10} {'p90/p95':>10} {'p99':>10} {'runs':>5}  threads")
        for label, lat in rows:
            print(f"{label:36} {benchmark.duration(lat['p50_ms']):>10} {benchmark.duration(lat['p90_ms']):>10}"
                  f" {benchmark.duration(lat['p99_ms']):>10} {lat['runs']:>5}  {lat['threads']}")
        tflite = Path(results["tflite"]["output"])
        for threads in (None, args.threads):
            lat = official(tflite, ours["runs"], ours["warmup"], threads, work)["latency"]
            label = f"tflite, LiteRT benchmark tool"
            print(f"{label:36} {benchmark.duration(lat['median_ms']):>10} {benchmark.duration(lat['p95_ms']):>10}"
                  f" {'':>10} {lat['num_runs']:>5}  {threads or 'tool default (1)'}")
        print("(the official tool reports median and p95, rounded to 0.01 ms; convhub p50, p90 and p99)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
