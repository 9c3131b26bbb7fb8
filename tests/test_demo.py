"""`convhub demo`, the README's first command, converts the built-in examples through every route."""

import json

from conftest import ROOT, assert_schema, run_cli


def test_demo_converts_every_example_through_every_route(tmp_path):
    proc = run_cli("demo", "--json", "--out", tmp_path, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = assert_schema(json.loads(proc.stdout))
    assert report["ok"] is True and report["command"] == "demo"
    converted = report["conversions"]
    done = {(c["example"], tuple(c["route"])) for c in converted}
    assert ("Keras file (.keras)", ("keras", "savedmodel", "tflite")) in done
    assert ("in-memory keras.Model", ("keras", "savedmodel", "onnx")) in done
    assert ("SavedModel directory", ("savedmodel", "tfjs")) in done
    assert ("JAX function (JaxFunction)", ("jax", "savedmodel", "onnx")) in done
    assert ("JAX function (JaxFunction)", ("jax", "savedmodel", "tfjs")) in done
    assert ("Flax linen module", ("jax", "savedmodel", "tflite")) in done
    assert ("Orbax JaxModule + ServingConfigs", ("jax", "savedmodel", "tflite")) in done
    # The JaxModule is lowered again to plain TF ops for the converters that refuse XlaCallModule.
    assert ("Orbax JaxModule + ServingConfigs", ("jax", "savedmodel", "tfjs")) in done
    # 6 sources x 4 targets (savedmodel, tflite, onnx, tfjs), but a SavedModel is not converted to itself.
    assert len(report["conversions"]) == 29  # 6 sources; tfserving from each
    for conversion in converted:
        assert conversion["ok"] and conversion["parity"], conversion
        assert all(p["checked"] and p["passed"] and p["max_abs_diff"] < 1e-4 for p in conversion["parity"])
    # Every pair has a route now; a pair without one would be said with the router's reasons.
    assert not [c for c in report["conversions"] if "no_route" in c]
    assert (tmp_path / "report.html").stat().st_size > 10_000 and report["report"] == str(tmp_path / "report.html")
    assert "max abs diff" in proc.stderr  # the table, for people, on stderr in --json mode
