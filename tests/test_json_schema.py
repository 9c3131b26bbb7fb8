"""Every command's --json validates against the published schema (docs/convhub.schema.json).

The conversions run on the hostile plugin's toy formats (NumPy, milliseconds), so every command
and every shape (one target, several, a failed one, an error, an interruption) is covered
without loading a framework; the demo's JSON is validated where the demo runs (test_demo.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import CONVHUB, ROOT, assert_schema

SCHEMA = json.loads((ROOT / "docs" / "convhub.schema.json").read_text())


def cli(site: Path, *args: object) -> tuple[int, dict]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([str(CONVHUB), *map(str, args), "--json"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT, stdin=subprocess.DEVNULL)
    return proc.returncode, assert_schema(json.loads(proc.stdout))


@pytest.fixture
def toy(tmp_path) -> Path:
    path = tmp_path / "model.toy"
    path.write_text(json.dumps({"w": np.random.default_rng(0).normal(size=(4, 3)).round(4).tolist()}))
    return path


def test_every_command_has_a_definition_and_nothing_else_does():
    from convhub.cli import COMMANDS

    dispatched = {entry["if"]["properties"]["command"]["const"]: entry["then"]["$ref"]
                  for entry in SCHEMA["$defs"]["commands"]["allOf"]}
    assert set(dispatched) == set(COMMANDS) - {"completion"}  # completion prints a shell script, no JSON
    assert all(ref == f"#/$defs/{name}" for name, ref in dispatched.items())


def test_listings(hostile_site):
    code, formats = cli(hostile_site, "formats")
    assert code == 0 and formats["command"] == "formats" and formats["schema_version"] == 1
    assert {"tfjs", "toy"} <= {f["name"] for f in formats["formats"]}
    assert "tf.js" in next(f for f in formats["formats"] if f["name"] == "tfjs")["aliases"]
    code, plugins = cli(hostile_site, "plugins")
    assert code == 0 and "hostile" in {p["name"] for p in plugins["plugins"]}
    code, route = cli(hostile_site, "route", "keras→TF.js", "--via", "saved_model", "--all")
    assert code == 0 and route["target"] == "tfjs" and route["via"] == "savedmodel"
    assert all("savedmodel" in r["route"] for r in route["routes"])
    code, none = cli(hostile_site, "route", "tflite→keras", "--explain")
    assert code == 2 and none["ok"] is False and none["routes"] == []


def test_conversions_always_have_a_results_list(hostile_site, tmp_path, toy):
    code, one = cli(hostile_site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "one.toy")
    assert code == 0 and one["ok"] and one["error"] is None
    (result,) = one["results"]
    assert result["target"] == "toy-copy" and result["output"] == str(tmp_path / "one.toy")
    code, many = cli(hostile_site, "convert", toy, "--to", "toy-copy,toy-raise", "-o", tmp_path / "many")
    assert code == 1 and [r["target"] for r in many["results"]] == ["toy-copy", "toy-raise"]
    assert many["error"].startswith("toy-raise: ") and [r["ok"] for r in many["results"]] == [True, False]


def test_check_and_matrix(hostile_site, tmp_path, toy):
    cli(hostile_site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "copy.toy")
    code, checked = cli(hostile_site, "check", toy, tmp_path / "copy.toy")
    assert code == 0 and checked["command"] == "check" and len(checked["parity"]) == 1
    code, matrix = cli(hostile_site, "matrix", toy, "--to", "toy-copy")
    assert code == 0 and matrix["command"] == "matrix" and matrix["summary"]["passed"] == 1


@pytest.mark.parametrize("args, code", [
    (["convert", "x.toy", "--to", "toy-copy"], 2),  # no -o: argparse's error
    (["convert", "toy→tflie", "x.toy", "-o", "y"], 2),  # with a hint
    (["frobnicate"], 2),
], ids=["argparse", "hint", "no-command"])
def test_errors(hostile_site, args, code):
    status, error = cli(hostile_site, *args)
    assert status == code and error["exit_code"] == code and error["ok"] is False


def test_an_error_object_is_not_a_command_object():
    """The schema does tell them apart: an error lacks what a conversion has, and vice versa."""
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        assert_schema({"schema_version": 1, "command": "convert", "ok": True})  # no results
    with pytest.raises(jsonschema.ValidationError):
        assert_schema({"schema_version": 1, "command": "formats", "ok": False, "exit_code": 2})  # no error text
    with pytest.raises(jsonschema.ValidationError):
        assert_schema({"schema_version": 2, "command": "formats", "ok": True, "formats": []})
