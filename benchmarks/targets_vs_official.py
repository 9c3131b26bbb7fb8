"""One SavedModel to TFLite, ONNX and TF.js: convhub in one process vs the three official
command-line converters run one after another.

    uv run python benchmarks/targets_vs_official.py [--repeat N]

Prints each wall time and the ratio convhub / official. convhub is timed twice: converting only
(--no-check, the same work as the official tools) and converting plus its parity check of every
artifact (which the official tools don't do at all).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def make_saved_model(directory: Path) -> Path:
    code = (
        "import sys; sys.path.insert(0, 'examples'); import keras_cnn;"
        f" keras_cnn.model().export({str(directory / 'sm')!r}, verbose=False)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)
    return directory / "sm"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sm = make_saved_model(tmp)
        runs: dict[str, list[float]] = {"convhub --no-check": [], "convhub (with parity check)": [], "official sequence": []}
        for i in range(args.repeat):
            out = tmp / f"run{i}"
            runs["convhub --no-check"].append(timed([
                str(BIN / "convhub"), "convert", str(sm), "--to", "tflite,onnx,tfjs", "-o", str(out / "a"), "--no-check", "-q"]))
            runs["convhub (with parity check)"].append(timed([
                str(BIN / "convhub"), "convert", str(sm), "--to", "tflite,onnx,tfjs", "-o", str(out / "b"), "-q"]))
            official = [
                [str(BIN / "tflite_convert"), f"--saved_model_dir={sm}", f"--output_file={out / 'c.tflite'}"],
                [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(sm), "--output", str(out / "c.onnx"), "--opset", "17"],
                [str(BIN / "tensorflowjs_converter"), "--input_format=tf_saved_model", str(sm), str(out / "c_tfjs")],
            ]
            (out / "c_tfjs").parent.mkdir(parents=True, exist_ok=True)
            runs["official sequence"].append(sum(timed(cmd) for cmd in official))
    base = statistics.median(runs["official sequence"])
    for name, times in runs.items():
        median = statistics.median(times)
        print(f"{name:<30} {median:6.1f} s   ratio to official {median / base:4.2f}x   ({len(times)} run(s))")


if __name__ == "__main__":
    main()
