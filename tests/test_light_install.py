"""The light install beside today's JAX, end to end: a Python 3.12 environment with the newest jax
and flax from PyPI (made with uv, from its cache when it has them), `uv pip install '.[jax]'` from
this checkout, which must not move jax, jaxlib, flax or numpy; then an NNX CNN with BatchNorm and
a linen MLP converted to tflite, onnx and tfjs with `convhub.convert(..., example_inputs=(x,))` and
with the command line (`models.py:NAME` references), every target checked against the JAX model:
jax.export and jax2onnx run there, litert-converter, LiteRT, onnx2tf and tensorflowjs in their
toolchains (made on first use under ~/.cache/convhub/toolchains, reused afterwards).

Slow the first time on a machine (the onnx2tf and tensorflowjs toolchains are ~2.5 GB each:
`convhub toolchains --all` in .ci/run makes what it can ahead); about two minutes after that."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from convhub import toolchains

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "light_env"
WATCHED = ("jax", "jaxlib", "flax", "numpy")
TARGETS = ["tflite", "onnx", "tfjs"]
ROUTES = {"tflite": ["jax", "stablehlo", "tflite"], "onnx": ["jax", "onnx"],
          "tfjs": ["jax", "onnx", "savedmodel", "tfjs"]}
TOOLCHAINS = {"litert-converter", "litert", "onnx2tf", "tensorflowjs"}

UV = toolchains.uv()
PYTHON312 = next((path for version, path in toolchains.interpreters() if version[:2] == (3, 12)), None)
pytestmark = pytest.mark.skipif(UV is None or PYTHON312 is None or shutil.which("node") is None,
                                reason="needs uv, a Python 3.12 and Node.js")


def uv(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([UV, *args], check=True, capture_output=True, text=True, timeout=1800, env=env, **kwargs)


def versions(python: Path) -> dict[str, str]:
    lines = uv("pip", "freeze", "--python", str(python)).stdout.splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line)


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """(the environment's Python, its packages before convhub, after)."""
    place = tmp_path_factory.mktemp("light") / "venv"
    uv("venv", "--quiet", "--python", PYTHON312, str(place))
    python = place / "bin" / "python"
    uv("pip", "install", "--quiet", "--python", str(python), "jax", "flax")  # the newest: what researchers have
    before = versions(python)
    uv("pip", "install", "--quiet", "--python", str(python), ".[jax]", cwd=ROOT)
    return python, before, versions(python)


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python ARGS`, or with "convhub" first the environment's console script, as its user runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    command = [str(python.parent / "convhub"), *args[1:]] if args[0] == "convhub" else [str(python), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=cwd,
                          env={**env, "PATH": f"{python.parent}{os.pathsep}{env['PATH']}"})


def assert_checked(results: list[dict]) -> None:
    assert [r["target"] for r in results] == TARGETS
    for result in results:
        assert result["ok"], result["error"]
        assert result["route"] == ROUTES[result["target"]]
        final = result["parity"][-1]
        assert final["checked"] and final["passed"] and final["max_abs_diff"] < 1e-5, final


def test_installing_leaves_jax_flax_and_numpy_as_they_are(light):
    python, before, after = light
    assert int(before["jax"].split(".")[1]) >= 8 and {p: after[p] for p in WATCHED} == {p: before[p] for p in WATCHED}
    moved = {p: (v, after.get(p)) for p, v in before.items() if after.get(p) != v}
    print("jax", before["jax"], "flax", before["flax"], "numpy", before["numpy"], "| moved by the install:", moved)
    proc = run(python, "-c", "import sys, convhub_jax, convhub_tflite, convhub_onnx, convhub_tfjs; "
                             "from convhub.plugins import default_registry; default_registry().graph; "
                             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'jax', 'keras')))",
               cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr  # plugins import no framework
    assert "tensorflow" not in after and "ai-edge-litert" not in after and "litert-converter" not in after


def test_nnx_and_linen_models_convert_to_every_target_and_a_second_run_reuses_the_toolchains(light, tmp_path):
    python = light[0]
    proc = run(python, str(HERE / "convert.py"), str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert_checked(report["results"]["cnn"])
    assert_checked(report["results"]["mlp"])
    print("first", round(report["first_seconds"], 1), "s; second", round(report["second_seconds"], 1), "s;",
          "toolchain code in the second:", {k: round(v, 3) for k, v in report["second_toolchain_seconds"].items()},
          "; worker start:", {k: round(v, 2) for k, v in report["worker_start_seconds"].items()})
    assert sum(report["second_toolchain_seconds"].values()) <= 1.0

    listing = run(python, "convhub", "toolchains", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    entries = {t["name"]: t for t in json.loads(listing.stdout)["toolchains"]}
    assert set(entries) == TOOLCHAINS
    for entry in entries.values():
        assert entry["state"] == "installed" and entry["python"] == "3.12", entry
        assert len(entry["lock_hash"]) == 12 and entry["size"] > 10_000_000


@pytest.mark.parametrize("model, examples", [("nnx_cnn", "image_inputs"), ("linen_mlp", "feature_inputs")])
def test_the_command_line_converts_a_module_reference(light, tmp_path, model, examples):
    python = light[0]
    models = HERE / "models.py"
    proc = run(python, "convhub", "convert", f"{models}:{model}", "--example-inputs",
               f"{models}:{examples}", "--to", ",".join(TARGETS), "-o", str(tmp_path / "out"), "--json", "-q",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(proc.stdout)
    assert payload["ok"]
    assert_checked(payload["results"])
    assert (tmp_path / "out" / f"{model}.tflite").is_file() and (tmp_path / "out" / f"{model}_tfjs" / "model.json").is_file()
