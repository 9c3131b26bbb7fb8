"""`convhub batch`, for real: 4 models (a .keras file, a SavedModel, a JAX function, a Keras
module) × 3 targets (TFLite, ONNX, TF.js) × 2 option sets, plus a toy model whose converter
segfaults (the hostile test plugin), run by the CLI as users run it:

- locally, on the warm worker pool: every cell decided, the crash failing its own cell alone;
- on a real two-node Ray cluster this module starts (1 CPU each, no dashboard): the same
  statuses, the same errors, max errors within tolerance;
- the cache: a rerun converts nothing, touching one model reruns its cells only, changing an
  option set reruns its cells only, another tf2onnx version invalidates only the ONNX cells;
- the example job (examples/batch/convhub.toml), run and then served from the cache;
- Ctrl-C mid-batch: exit 130, nothing half-written, the next run resumes from the cache;
- a Ray actor lost mid-work (its process killed, as when its node goes): the work runs again on
  the other actor; what was lost is not cached.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CONVHUB, FOREGROUND, ROOT, assert_schema, build_cnn

JOB = """\
models = ["cnn.keras", "saved_cnn", "jax_function.py:mlp", "keras_cnn.py:model", "toy.toy"]
targets = ["tflite", "onnx", "tfjs"]
seed = 0
layout = "{model}/{target}/{options}/{model}{suffix}"

[options]
float32 = {}
small = {"tflite.quantize" = "float16", "onnx.opset" = 15, "tfjs.tfjs_quantize" = "float16"}

[model.toy]           # the hostile plugin's toy model: one converter copies it, one segfaults
targets = ["toy-copy", "toy-segv"]
options = ["float32"]
"""
REAL = ["cnn", "saved_cnn", "jax_function", "keras_cnn"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, cnn_file) -> Path:
    """The job's folder: models built in code (random live weights), copied per test."""
    folder = tmp_path_factory.mktemp("batch-job")
    shutil.copy(cnn_file, folder / "cnn.keras")
    build_cnn(seed=2).export(str(folder / "saved_cnn"), format="tf_saved_model", verbose=False)
    for example in ("jax_function.py", "keras_cnn.py"):
        shutil.copy(ROOT / "examples" / example, folder / example)
    rng = np.random.default_rng(0)
    (folder / "toy.toy").write_text(json.dumps({"w": rng.normal(size=(4, 3)).round(4).tolist()}))
    (folder / "convhub.toml").write_text(JOB)
    return folder


def copy_of(pristine: Path, where: Path) -> Path:
    shutil.copytree(pristine, where, symlinks=True)
    return where / "convhub.toml"


def batch(site: Path, job: Path, out: Path, cache: Path, *args: object, timeout: float = 900) -> dict:
    env = {**os.environ, "PYTHONPATH": str(site), "CONVHUB_CACHE_DIR": str(cache)}
    proc = subprocess.run([str(CONVHUB), "batch", str(job), "-o", str(out), "--json", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    payload = assert_schema(json.loads(proc.stdout))
    payload["exit_code"], payload["stderr"] = proc.returncode, proc.stderr
    return payload


def cells(payload: dict) -> dict[tuple[str, str, str], dict]:
    return {(c["model"], c["target"], c["options"]): c for c in payload["cells"]}


@pytest.fixture(scope="module")
def local_run(pristine, hostile_site, tmp_path_factory) -> tuple[dict, Path, Path, Path]:
    folder = tmp_path_factory.mktemp("local")
    job = copy_of(pristine, folder / "job")
    out, cache = folder / "out", folder / "cache"
    return batch(hostile_site, job, out, cache), job, out, cache


def test_every_cell_is_decided_and_the_crashing_converter_fails_its_cell_alone(local_run):
    payload, job, out, _ = local_run
    assert payload["exit_code"] == 1, payload["stderr"]  # one cell failed
    found = cells(payload)
    assert len(found) == 4 * 3 * 2 + 2 and payload["summary"]["ran"] == 26 and payload["complete"]
    failed = [k for k, c in found.items() if c["status"] != "passed"]
    assert failed == [("toy", "toy-segv", "float32")], {k: found[k]["error"] for k in failed}
    assert found[failed[0]]["error"] == "toy → toy-segv (hostile) failed: the converter crashed (SIGSEGV)"
    for (model, target, options), cell in found.items():
        if cell["status"] != "passed":
            assert cell["output"] is None
            continue
        assert Path(cell["output"]).exists() and Path(cell["output"]).is_relative_to(out)
        assert Path(cell["report"]).read_text().startswith("<!doctype html>")
        assert cell["max_abs_diff"] is not None and cell["bytes"] > 0
    # The options reached the converters: what each final hop says it wrote.
    for model in REAL:
        for target in ("tflite", "tfjs"):
            for options, precision in (("float32", "float32"), ("small", "float16")):
                facts = found[(model, target, options)]["result"]["artifacts"][-1]["facts"]
                if target == "tfjs" and options == "small":
                    assert facts["tfjs_float32_small_weights"] > 0  # the quantizer ran
                    if model in ("jax_function", "keras_cnn"):  # no weight of 1,024 values: all stay float32
                        precision = "float32"
                assert facts["precision"] == precision, (model, target, options, facts)
        assert found[(model, "onnx", "small")]["result"]["artifacts"][-1]["facts"]["opset"] == 15
    assert found[("cnn", "tflite", "float32")]["output"] == str(out / "cnn" / "tflite" / "float32" / "cnn.tflite")
    assert (out / "saved_cnn" / "tfjs" / "small" / "saved_cnn_tfjs" / "model.json").exists()
    # The overview: one line per cell, and one page whose cells link to their reports.
    lines = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert [(c["model"], c["target"], c["options"], c["status"]) for c in lines] == [
        (c["model"], c["target"], c["options"], c["status"]) for c in payload["cells"]]
    page = (out / "index.html").read_text()
    assert 'href="reports/cnn/tflite-small.html"' in page and "converter crashed (SIGSEGV)" in page
    assert "25/26 cells passed, 1 failed" in payload["stderr"]
    assert not list(out.rglob(".convhub-staging-*"))


def test_the_cache_redoes_no_cell_then_exactly_the_cells_of_what_changed(local_run, hostile_site):
    _, job, out, cache = local_run
    folder = job.parent
    started = time.perf_counter()
    again = batch(hostile_site, job, out, cache)
    took = time.perf_counter() - started
    assert again["summary"]["ran"] == 0 and again["summary"]["cached"] == 26, again["stderr"]
    assert all(c["cached"] for c in again["cells"]) and again["exit_code"] == 1
    assert took < 20, took  # no framework loaded (3 s on an idle machine: benchmarks/batch_vs_convert.py)
    assert [c["status"] for c in again["cells"]] == [c["status"] for c in local_run[0]["cells"]]

    os.utime(folder / "cnn.keras")  # a new mtime, the same content: still cached
    (folder / "jax_function.py").write_text((folder / "jax_function.py").read_text() + "\n# touched\n")
    touched = batch(hostile_site, job, out, cache)
    ran = sorted(k for k, c in cells(touched).items() if not c["cached"])
    assert ran == sorted((("jax_function", t, o) for t in ("tflite", "onnx", "tfjs") for o in ("float32", "small"))), ran
    assert all(c["status"] == "passed" for k, c in cells(touched).items() if k[0] == "jax_function")

    text = job.read_text().replace('"tflite.quantize" = "float16"', '"tflite.quantize" = "dynamic"')
    job.write_text(text)
    changed = batch(hostile_site, job, out, cache)
    ran = sorted(k for k, c in cells(changed).items() if not c["cached"])
    assert ran == sorted((m, "tflite", "small") for m in REAL), ran

    # A converter upgrade: entries recorded with another tf2onnx than the one installed now are
    # not used, and only the cells whose route runs tf2onnx have such entries.
    for path in cache.rglob("entry.json"):
        record = json.loads(path.read_text())
        if "tf2onnx" in record["versions"]:
            record["versions"]["tf2onnx"] = "1.16.1"
            path.write_text(json.dumps(record))
    planned = batch(hostile_site, job, out, cache, "--dry-run")
    to_run = sorted(k for k, c in cells(planned).items() if c["status"] == "to run")
    assert to_run == sorted((m, "onnx", o) for m in REAL for o in ("float32", "small")), to_run


def test_a_cache_folder_that_cannot_be_made_stops_the_batch_before_any_cell(tmp_path):
    """CONVHUB_CACHE_DIR naming a file: one line naming the variable, exit 2, nothing converted
    or written (before, a whole cell ran and then failed to be stored, as a toolchain error)."""
    taken = tmp_path / "a-file"
    taken.write_text("")
    env = {**os.environ, "CONVHUB_CACHE_DIR": str(taken)}
    started = time.perf_counter()
    proc = subprocess.run([str(CONVHUB), "batch", str(ROOT / "examples/batch/convhub.toml"), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "cannot use" in proc.stderr and "for convhub's cache" in proc.stderr and "CONVHUB_CACHE_DIR" in proc.stderr
    assert not (tmp_path / "out").exists() and time.perf_counter() - started < 60


def test_the_example_job_runs_and_is_then_served_from_the_cache(tmp_path):
    job = ROOT / "examples/batch/convhub.toml"
    env = {**os.environ, "CONVHUB_CACHE_DIR": str(tmp_path / "cache")}
    runs = []
    for _ in range(2):
        proc = subprocess.run([str(CONVHUB), "batch", str(job), "-o", str(tmp_path / "out"), "--json"],
                              capture_output=True, text=True, env=env, timeout=900, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        runs.append(assert_schema(json.loads(proc.stdout)))
    first, second = runs
    models = {c["model"] for c in first["cells"]}
    assert len(models) >= 3 and all(len({c["target"] for c in first["cells"] if c["model"] == m}) >= 2 for m in models)
    assert first["summary"]["ran"] == len(first["cells"]) and all(c["status"] == "passed" for c in first["cells"])
    assert second["summary"]["cached"] == len(second["cells"]) and second["summary"]["ran"] == 0
    assert [c["max_abs_diff"] for c in second["cells"]] == [c["max_abs_diff"] for c in first["cells"]]


def toy_job(folder: Path) -> Path:
    """Two toy models: a's converter copies it at once, b's hangs."""
    for name in ("a", "b"):
        (folder / f"{name}.toy").write_text(json.dumps({"w": [[1.0, 2.0], [3.0, -1.0]]}))
    job = folder / "convhub.toml"
    job.write_text('models = ["a.toy", "b.toy"]\ntargets = ["toy-copy", "toy-hang"]\n'
                   '[model.a]\ntargets = ["toy-copy"]\n[model.b]\ntargets = ["toy-hang"]\n')
    return job


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes_from_the_cache(hostile_site, tmp_path):
    job = toy_job(tmp_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(hostile_site), "CONVHUB_CACHE_DIR": str(cache)}
    proc = subprocess.Popen([sys.executable, "-c", FOREGROUND, str(CONVHUB), "batch", str(job), "-o", str(out),
                             "--jobs", "1"], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:  # the copy is decided; the hang runs
        seen.append(line)
        if "a → toy-copy default: ok" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, "".join(seen) + proc.stderr.read()
    assert "stopped by SIGINT" in proc.stderr.read()
    lines = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert [(c["target"], c["status"]) for c in lines] == [("toy-copy", "passed"), ("toy-hang", "not run")]
    assert "interrupted" in (out / "index.html").read_text()
    assert (out / "a" / "default" / "a.toy").exists() and not list(out.rglob(".convhub-staging-*"))
    resumed = batch(hostile_site, job, out, cache, "--timeout", "2")
    found = {c["target"]: c for c in resumed["cells"]}
    assert found["toy-copy"]["cached"] and found["toy-copy"]["status"] == "passed"
    assert not found["toy-hang"]["cached"] and "ran past the 2 s timeout" in found["toy-hang"]["error"]
    # A timeout says more about the machine than about the cell: not cached, tried again next time.
    assert not batch(hostile_site, job, out, cache, "--timeout", "2")["cells"][1]["cached"]


# --- on a real Ray cluster ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster(hostile_site):
    """Two Ray nodes of 1 CPU each on this machine, no dashboard; their processes see the
    hostile plugin (PYTHONPATH), as nodes of a real cluster have the same plugins installed."""
    from ray.cluster_utils import Cluster

    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(hostile_site)
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                                "object_store_memory": 150 << 20})
        cluster.add_node(num_cpus=1, object_store_memory=150 << 20)
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
    yield cluster
    cluster.shutdown()


def test_ray_gives_the_local_statuses_and_errors(pristine, local_run, ray_cluster, hostile_site, tmp_path):
    job = copy_of(pristine, tmp_path / "job")
    payload = batch(hostile_site, job, tmp_path / "out", tmp_path / "cache", "--executor", "ray",
                    "--address", ray_cluster.address)
    assert payload["executor"] == "ray" and payload["summary"]["ran"] == 26, payload["stderr"]
    assert "2 convhub actors" in payload["stderr"]
    local, remote = cells(local_run[0]), cells(payload)
    assert list(remote) == list(local)
    for key, cell in local.items():
        theirs = remote[key]
        assert theirs["status"] == cell["status"] and theirs["error"] == cell["error"], key
        assert theirs["route"] == cell["route"], key
        if cell["max_abs_diff"] is not None:
            tolerance = cell["result"]["parity"][-1]["tolerance"]["atol"]
            assert abs(theirs["max_abs_diff"] - cell["max_abs_diff"]) <= tolerance, key
    assert Path(remote[("saved_cnn", "tfjs", "small")]["output"], "model.json").exists()
    # What came back from the actors is in the cache: a rerun here converts nothing.
    again = batch(hostile_site, job, tmp_path / "out", tmp_path / "cache", "--executor", "ray",
                  "--address", ray_cluster.address)
    assert again["summary"]["cached"] == 26


def test_a_lost_ray_actor_s_work_runs_again_elsewhere_and_nothing_lost_is_cached(ray_cluster, hostile_site, tmp_path):
    import psutil

    job = toy_job(tmp_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(hostile_site), "CONVHUB_CACHE_DIR": str(cache)}
    proc = subprocess.Popen([str(CONVHUB), "batch", str(job), "-o", str(out), "--executor", "ray", "--address",
                             ray_cluster.address, "--timeout", "8"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "a → toy-copy default: ok" in line:
            break
    time.sleep(2.0)  # b's hang is under way in the other actor: its node is lost now
    running = [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [""])[0] == "ray::CellActor.run"]
    assert len(running) == 1, "".join(seen)
    running[0].kill()
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 1, "".join(seen) + rest
    assert "lost a Ray actor (" in rest and "while it ran b: toy-hang" in rest
    lines = {c["target"]: c for c in map(json.loads, (out / "cells.jsonl").read_text().splitlines())}
    assert lines["toy-copy"]["status"] == "passed"
    assert "ran past the 8 s timeout" in lines["toy-hang"]["error"]  # tried again on the other actor
    again = batch(hostile_site, job, out, cache, "--timeout", "1")
    found = {c["target"]: c for c in again["cells"]}
    assert found["toy-copy"]["cached"] and not found["toy-hang"]["cached"]
