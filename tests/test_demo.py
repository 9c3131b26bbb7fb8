"""`convhub demo`, the README's first command, converts the built-in examples through every route."""

import json

from conftest import ROOT, run_cli


def test_demo_converts_every_example_through_every_route(tmp_path):
    proc = run_cli("demo", "--json", "--out", tmp_path, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    done = {(c["example"], tuple(c["route"])) for c in report["conversions"]}
    assert ("Keras file (.keras)", ("keras", "savedmodel", "tflite")) in done
    assert ("in-memory keras.Model", ("keras", "savedmodel", "tflite")) in done
    assert ("SavedModel directory", ("savedmodel", "tflite")) in done
    for conversion in report["conversions"]:
        assert conversion["ok"] and conversion["parity"], conversion
        assert all(p["checked"] and p["passed"] and p["max_abs_diff"] < 1e-4 for p in conversion["parity"])
    assert len(list(tmp_path.glob("*.tflite"))) == 3  # one per example source
    assert "max abs diff" in proc.stderr  # the table, for people, on stderr in --json mode
