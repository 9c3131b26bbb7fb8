"""The example plugins in examples/, installed as a third party would (pip-style, from their own
pyproject.toml, found through their entry points), next to a deliberately broken plugin."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import CONVHUB, ROOT, build_cnn

EXAMPLE_PLUGINS = [ROOT / "examples" / "convhub-tflm", ROOT / "examples" / "convhub-onnx-int8"]
BROKEN = ROOT / "tests" / "plugins" / "convhub-broken"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder on PYTHONPATH holding the installed plugins; the project's venv stays untouched."""
    target = tmp_path_factory.mktemp("site-packages")
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install the example plugins (pip install uv)")
    subprocess.run([uv, "pip", "install", "--quiet", "--python", sys.executable, "--no-deps", "--target", str(target),
                    *map(str, EXAMPLE_PLUGINS), str(BROKEN)], check=True, capture_output=True, timeout=600)
    return target


def run(site, *args, timeout=900):
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("CONVHUB_STRICT_PLUGINS", None)
    return subprocess.run([*map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


WARNING = "convhub: warning: plugin 'broken' failed to load and is skipped: ImportError: convhub_broken needs the module 'not_installed_anywhere'"


def test_a_broken_plugin_does_not_stop_help_or_listings(site):
    # --help loads no plugin at all, so it has nothing to warn about.
    help_ = run(site, CONVHUB, "--help")
    assert help_.returncode == 0 and help_.stdout.startswith("usage: convhub") and help_.stderr == ""
    # Each listing loads the plugins: it warns once about the broken one and lists the working ones.
    for args in (["formats"], ["plugins"], ["route", "keras→tflm"]):
        proc = run(site, CONVHUB, *args)
        assert proc.returncode == 0, proc.stderr
        assert WARNING in proc.stderr and proc.stderr.count("warning") == 1, (args, proc.stderr)
        assert "tflm" in proc.stdout, args
    strict = run(site, "env", "CONVHUB_STRICT_PLUGINS=1", CONVHUB, "formats")
    assert strict.returncode == 1 and "plugin 'broken' failed to load" in strict.stderr
    assert run(site, CONVHUB, "--disable-plugin", "broken", "formats").stderr == ""


def test_route_and_plugins_name_the_new_target(site):
    proc = run(site, CONVHUB, "route", "keras→tflm", "--json")
    hops = json.loads(proc.stdout)["routes"][0]["hops"]
    assert [(h["to"], h["plugin"]) for h in hops] == [("savedmodel", "tensorflow"), ("tflite", "tflite"), ("tflm", "tflm")]
    plugins = {p["name"]: p for p in json.loads(run(site, CONVHUB, "plugins", "--json").stdout)["plugins"]}
    assert plugins["tflm"] == {"name": "tflm", "version": "0.1.0", "formats": ["tflm"],
                               "conversions": ["tflite->tflm"], "runners": ["cc+litert"], "options": [], "broken": ""}


def test_convert_to_the_new_target_writes_c_that_compiles(site, tmp_path):
    model = tmp_path / "cnn.keras"
    build_cnn().save(model)
    out = tmp_path / "model.c"
    proc = run(site, CONVHUB, "convert", "keras→tflm", model, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert WARNING in proc.stderr  # warned, and converted all the same
    (report,) = json.loads(proc.stdout)["results"]
    assert report["route"] == ["keras", "savedmodel", "tflite", "tflm"]
    assert [(p["format"], p["runner"], p["passed"]) for p in report["parity"]] == [
        ("savedmodel", "tensorflow", True), ("tflite", "litert", True), ("tflm", "cc+litert", True)]
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-c", str(out), "-o", str(tmp_path / "model.o")], check=True)


@pytest.mark.parametrize("plugin", EXAMPLE_PLUGINS, ids=lambda p: p.name)
def test_the_example_plugins_own_tests_pass_with_the_testing_kit(site, plugin):
    proc = run(site, sys.executable, "-m", "pytest", plugin / "tests", "-q", "-p", "no:cacheprovider")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_the_new_edge_is_checked_by_the_cross_checker_like_a_builtin(site, tmp_path):
    model = tmp_path / "cnn.keras"
    build_cnn().save(model)
    proc = run(site, CONVHUB, "--disable-plugin", "broken", "convert", "keras→onnx-int8", model,
               "-o", tmp_path / "m.int8.onnx", "--json")
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(proc.stdout)["results"]
    assert report["route"] == ["keras", "savedmodel", "onnx", "onnx-int8"]
    final = report["parity"][-1]
    assert final["runner"] == "onnxruntime-int8" and final["passed"] and final["previous"] == "onnx"
    assert final["tolerance"]["span"] > 0  # judged as a quantized model, not by float32 tolerances
