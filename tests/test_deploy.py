"""What a run leaves for deploying: provenance in every artifact (read back with each format's own
library) and beside it, `convhub inspect` on every format, --benchmark figures, the HTML report
people read first, and --save-io. One conversion to every target serves the whole module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convhub import cli, provenance
from conftest import CONVHUB, assert_schema, screenshot


@pytest.fixture(scope="module")
def run(cnn_file, tmp_path_factory):
    """cnn.keras → tflite, onnx, tfjs, savedmodel, tfserving, with --benchmark, --report, --save-io."""
    root = tmp_path_factory.mktemp("deploy")
    out, report, io = root / "out", root / "report.html", root / "io.npz"
    proc = subprocess.run([str(CONVHUB), "convert", str(cnn_file), "--to", "tflite,onnx,tfjs,savedmodel,tfserving",
                           "-o", str(out), "--benchmark", "--report", str(report), "--save-io", str(io), "--json", "-q"],
                          capture_output=True, text=True, timeout=900)
    payload = json.loads(proc.stdout)
    assert proc.returncode == 0, payload.get("error")
    return {"out": out, "report": report, "io": io, "json": assert_schema(payload), "source": cnn_file}


def embedded_records(out: Path) -> dict[str, dict]:
    """The record in each artifact, read with the format's own library."""
    import onnx
    from ai_edge_litert import schema_py_generated as schema

    records = {}
    model = onnx.load(str(out / "cnn.onnx"))
    records["onnx"] = json.loads({p.key: p.value for p in model.metadata_props}["convhub.provenance"])
    flatbuffer = schema.Model.GetRootAsModel((out / "cnn.tflite").read_bytes(), 0)
    entries = {flatbuffer.Metadata(i).Name().decode(): flatbuffer.Metadata(i).Buffer()
               for i in range(flatbuffer.MetadataLength())}
    records["tflite"] = json.loads(flatbuffer.Buffers(entries["convhub.provenance"]).DataAsNumpy().tobytes())
    model_json = json.loads((out / "cnn_tfjs" / "model.json").read_text())
    records["tfjs"] = model_json["userDefinedMetadata"]["convhub.provenance"]
    records["savedmodel"] = json.loads((out / "cnn_savedmodel" / "assets.extra" / "convhub.json").read_text())
    records["tfserving"] = json.loads((out / "cnn_tfserving" / "model" / "1" / "assets.extra" / "convhub.json").read_text())
    return records


def test_every_artifact_carries_the_record_of_this_run(run):
    import tensorflow as tf

    records = embedded_records(run["out"])
    results = {r["target"]: r for r in run["json"]["results"]}
    source_hash = provenance.content_hash(run["source"])
    assert len({r["run"] for r in records.values()}) == 1  # one run, one id
    for fmt, record in records.items():
        assert record["format"] == fmt and record["route"] == results[fmt]["route"]
        assert record["source"] == {"format": "keras", "path": str(run["source"]), "sha256": source_hash}
        assert record["inputs"] == {"seed": 0} and record["options"] == {"seed": 0}
        assert record["versions"]["tensorflow"] == tf.__version__ and record["convhub"]
        assert record["parity"].startswith("in the sidecar")  # the verdict came after the embedding
        side_path = provenance.sidecar_path(Path(results[fmt]["output"]))
        side = json.loads(side_path.read_text())
        assert {k: v for k, v in side.items() if k not in ("parity", "artifact", "inputs")} == {
            k: v for k, v in record.items() if k not in ("parity", "inputs")}
        assert side["parity"]["status"] == "passed" and side["parity"]["max_abs_diff"] == results[fmt]["parity"][-1]["max_abs_diff"]
        # The sidecar names the final bytes: the check ran on the artifact with its record embedded.
        assert side["artifact"]["sha256"] == provenance.content_hash(Path(results[fmt]["output"]))
    assert records["onnx"]["versions"].keys() >= {"tf2onnx", "onnx", "onnxruntime"}
    assert records["tflite"]["versions"].keys() >= {"ai-edge-litert"}
    assert records["tfjs"]["versions"].keys() >= {"tensorflowjs", "node"}
    assert records["tfjs"]["versions"]["@tensorflow/tfjs"] == "4.22.0"  # the runtime Node.js ran


def test_benchmark_figures_in_the_json(run):
    for result in run["json"]["results"]:
        assert result["source_latency"]["runtime"] == "keras" and result["source_bytes"] == run["source"].stat().st_size
        latency = result["parity"][-1]["latency"]
        assert latency["batch"] == 1 and latency["runs"] >= 5
        assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
    runtimes = {r["target"]: r["parity"][-1]["latency"]["runtime"] for r in run["json"]["results"]}
    assert runtimes["tflite"] == "litert" and runtimes["onnx"] == "onnxruntime" and runtimes["tfjs"] == "tfjs-node"


def test_inspect_every_format(run, tmp_path):
    """One `inspect --json` over the output folder, the Keras source and the serving base path."""
    out = run["out"]
    proc = subprocess.run([str(CONVHUB), "inspect", str(out), str(run["source"]), "--json"],
                          capture_output=True, text=True, timeout=300)
    payload = assert_schema(json.loads(proc.stdout))
    assert proc.returncode == 0 and payload["ok"], proc.stderr
    entries = {e["format"]: e for e in payload["artifacts"]}
    assert set(entries) == {"onnx", "tflite", "tfjs", "savedmodel", "tfserving", "keras"}
    for fmt, entry in entries.items():
        assert entry["inputs"] == [{"name": "image", "shape": [None, 12, 12, 2], "dtype": "float32"}], fmt
        assert [o["name"] for o in entry["outputs"]] == ["scores"] and entry["outputs"][0]["shape"] == [None, 4], fmt
        assert 9700 < entry["parameters"] < 9900 and entry["precision"]["float32"] > 0.99, fmt
        assert entry["operators"] and entry["bytes"] > 0, fmt
        if fmt != "keras":
            assert entry["provenance"]["format"] == fmt and entry["sidecar"]["matches"] is True, fmt
    assert entries["keras"]["parameters"] == 9798 and entries["keras"]["operators"]["Dense"] == 2
    assert "CONV_2D" in entries["tflite"]["operators"] and "Conv" in entries["onnx"]["operators"]
    assert "Conv2D" in entries["savedmodel"]["operators"] and "Conv2D" in entries["tfjs"]["operators"]
    assert [v["version"] for v in entries["tfserving"]["versions"]] == [1]
    # A sidecar that no longer belongs to the file says so.
    changed = tmp_path / "cnn.onnx"
    shutil.copy(out / "cnn.onnx", changed)
    (tmp_path / "cnn.onnx.convhub.json").write_text((out / "cnn.onnx.convhub.json").read_text())
    with changed.open("ab") as f:
        f.write(b"\x00")
    proc = subprocess.run([str(CONVHUB), "inspect", str(changed)], capture_output=True, text=True, timeout=120)
    assert "does NOT match this file" in proc.stdout


def test_inspecting_an_onnx_file_imports_no_tensorflow(run):
    code = (f"import sys, json; from convhub import cli; code = cli.main(['inspect', {str(run['out'] / 'cnn.onnx')!r},"
            " '--json']); assert code == 0; heavy = sorted(m for m in ('tensorflow', 'keras', 'jax', 'tf2onnx')"
            " if m in sys.modules); print(json.dumps(heavy), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    assert json.loads(proc.stdout)["artifacts"][0]["operators"]["Conv"] == 1


def test_inspect_refuses_what_is_no_model(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert cli.main(["inspect", str(tmp_path / "nothing.onnx")]) == 2
    assert cli.main(["inspect", str(tmp_path)]) == 2
    assert "holds none convhub can read" in capsys.readouterr().err


def test_save_io_holds_the_checks_inputs_and_outputs_and_replays(run, capsys):
    import keras

    with np.load(run["io"]) as data:
        arrays = {k: data[k] for k in data.files}
    assert set(arrays) == {"image", "expected/scores"} and arrays["image"].shape == (3, 12, 12, 2)
    source = keras.saving.load_model(run["source"])
    np.testing.assert_allclose(arrays["expected/scores"], source(arrays["image"]).numpy(), atol=1e-5)
    code = cli.main(["check", str(run["source"]), str(run["out"] / "cnn.tflite"), "--inputs", str(run["io"]),
                     "--json", "-q"])
    replay = json.loads(capsys.readouterr().out)
    assert code == 0 and replay["inputs"] == str(run["io"])
    record = json.loads((run["out"] / "cnn.tflite.convhub.json").read_text())
    assert record["inputs"]["sha256"] == provenance.arrays_hash({"image": arrays["image"]})


@pytest.mark.parametrize("flag, why", [("x.txt", "name an .npz file"), ("folder.npz", "is a folder"),
                                       ("in.npz", "is the input")])
def test_save_io_is_checked_before_anything_loads(cnn_file, tmp_path, capsys, flag, why):
    (tmp_path / "folder.npz").mkdir()
    np.savez(tmp_path / "in.npz", image=np.zeros((1, 12, 12, 2), "float32"))
    code = cli.main(["convert", "keras→tflite", str(cnn_file), "-o", str(tmp_path / "m.tflite"), "--save-io",
                     str(tmp_path / flag), "--inputs", str(tmp_path / "in.npz"), "-q"])
    assert code == 2 and why in capsys.readouterr().err


def test_save_io_and_benchmark_need_the_check(cnn_file, tmp_path, capsys):
    for flag in (["--save-io", str(tmp_path / "io.npz")], ["--benchmark"]):
        code = cli.main(["convert", "keras→tflite", str(cnn_file), "-o", str(tmp_path / "m.tflite"), "--no-check",
                         *flag, "-q"])
        assert code == 2 and "--no-check turns off" in capsys.readouterr().err


def test_the_report_opens_with_the_summary_and_the_latency_chart(run, tmp_path):
    page = run["report"].read_text()
    assert page.index('<table class="summary">') < page.index("<h2>Latency</h2>") < page.index("Tolerance applied")
    assert page.index("Tolerance applied") < page.index("Provenance and versions") < page.index("<h3>")
    assert page.count("<h3>savedmodel ") == 1  # the SavedModel that four routes share, once
    assert "<script" not in page and "tensorflow-serving-api" in page
    png = screenshot(run["report"], tmp_path / "report.png", "1200,900")  # one screen
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"))

    def count(rgb: tuple[int, int, int]) -> int:
        return int((pixels == rgb).all(axis=-1).sum())

    bars = count((0xE0, 0x7B, 0x39))  # the latency chart's p50 bars
    green = count((0x17, 0x80, 0x3D))  # "ok" in the summary table
    assert bars > 2000, "the latency chart is not on the first screen"
    assert green > 100, "the summary table's statuses are not on the first screen"
