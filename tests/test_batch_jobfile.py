"""`convhub batch`'s job file and cache keys, without converting anything: every mistake is one
line naming the file and the line it is on (exit 2, no framework loaded); the cells and their
keys follow the content of the models."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, assert_schema, run_cli

GOOD = """\
models = ["a.keras", "net.py:model"]
targets = ["tflite", "onnx"]

[options]
float32 = {}
half = {target = "tflite", quantize = "float16"}
"""


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "a.keras").write_bytes(b"PK\x03\x04 detected by its suffix, read later")
    (tmp_path / "net.py").write_text("import helpers\n\ndef model():\n    return helpers.build()\n")
    (tmp_path / "helpers.py").write_text("def build():\n    return None\n")
    return tmp_path


def write(project: Path, text: str, name: str = "convhub.toml") -> Path:
    path = project / name
    path.write_text(textwrap.dedent(text))
    return path


def load(path: Path):
    from convhub import jobfile

    return jobfile.load(path)


def test_the_cells_are_models_by_targets_by_the_option_sets_that_apply(project):
    job = load(write(project, GOOD))
    cells = [(c.model.name, c.target, c.option_set, dict(c.options), c.destination) for c in job.cells]
    assert cells == [
        ("a", "tflite", "float32", {}, "a/float32/a.tflite"),
        ("a", "tflite", "half", {"quantize": "float16"}, "a/half/a.tflite"),
        ("a", "onnx", "float32", {}, "a/float32/a.onnx"),
        ("net", "tflite", "float32", {}, "net/float32/net.tflite"),
        ("net", "tflite", "half", {"quantize": "float16"}, "net/half/net.tflite"),
        ("net", "onnx", "float32", {}, "net/float32/net.onnx"),
    ]
    assert job.models[0].format == "keras" and job.models[1].format is None  # a reference's: once it is read
    assert job.models[1].source == f"{project / 'net.py'}:model"


def test_scoped_options_make_a_set_apply_to_their_targets_only_and_overrides_narrow_a_model(project):
    job = load(write(project, """\
        models = ["a.keras", "net.py:model"]
        targets = ["tflite", "onnx", "tfjs"]
        [options]
        small = {"tflite.quantize" = "float16", "tfjs.tfjs_quantize" = "float16"}
        [model.net]
        targets = ["onnx", "tfjs"]
        """))
    assert [(c.model.name, c.target, dict(c.options)) for c in job.cells] == [
        ("a", "tflite", {"quantize": "float16"}), ("a", "tfjs", {"tfjs_quantize": "float16"}),
        ("net", "tfjs", {"tfjs_quantize": "float16"})]


def test_a_pyproject_table_is_a_job_too(project):
    path = write(project, "[project]\nname = 'zoo'\n\n[tool.convhub]\n" + GOOD.replace("[options]", "[tool.convhub.options]"),
                 "pyproject.toml")
    assert len(load(path).cells) == 6


@pytest.mark.parametrize("text, line, needle", [
    ('models = ["a.keras"]\ntargets = ["tflit"]\n', 2, "unknown format 'tflit'"),
    ('models = ["a.keras"]\ntargets = ["tflite"]\n[options]\nint8 = {quantise = "int8"}\n', 4,
     "no installed plugin declares an option 'quantise'"),
    ('models = ["a.keras"]\ntargets = ["tflite"]\n[options]\nint8 = {quantize = "int9"}\n', 4, "int9"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\n[options]\nq = {quantize = "int8"}\n', 4,
     "option 'quantize' of option set 'q' is not read by any conversion"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\n[options]\nq = {target = "tflite", quantize = "int8"}\n', 4,
     "is for tflite, which is not a target of this job"),
    ('models = ["a.keras",\n  "missing.keras"]\ntargets = ["onnx"]\n', 2, "no such file or directory"),
    ('models = ["zoo/*.keras"]\ntargets = ["onnx"]\n', 1, "matches no file"),
    ('models = ["a.keras", "gone.py:model"]\ntargets = ["onnx"]\n', 1, "gone.py: no such file"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\n\n[model.b]\ntargets = ["tflite"]\n', 4,
     "[model.b] names no model of this job"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\n[model.a]\noptions = ["fp16"]\n', 4, "no option set is named 'fp16'"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\nlayout = "{model}{suffix}"\n[options]\nx = {}\ny = {}\n', 3,
     "layout puts two cells at a.onnx"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\nlayout = "{name}/{suffix}"\n', 3, "unknown placeholder {name}"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\nlayout = "../{model}{suffix}"\n', 3, "must be a relative path"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\nseeds = 3\n', 3, "unknown key 'seeds'"),
    ('models = ["a.keras"]\ntargets = ["onnx"]\n[resources]\nmemory = "lots"\n', 4, "memory 'lots'"),
    ('models = ["a.keras"]\ntargets = ["onnx"\n', 2, "not valid TOML: Unclosed array"),
    ('models = ["a.keras"]\ntargets = ["onnx"] x\n', 2, "not valid TOML"),
])
def test_a_mistake_names_its_line(project, text, line, needle):
    from convhub.errors import UsageError

    path = write(project, text)
    with pytest.raises(UsageError) as info:
        load(path)
    assert info.value.message.startswith(f"{path}:{line}: "), info.value.message
    assert needle in info.value.message


def test_the_cli_refuses_a_bad_job_in_one_line_before_any_framework_loads(project):
    path = write(project, 'models = ["a.keras"]\ntargets = ["tflit"]\n')
    code = (f"import sys; from convhub.cli import main; code = main(['batch', {str(path)!r}, '-o', {str(project / 'out')!r},"
            " '--json']); print('TF', 'tensorflow' in sys.modules, file=sys.stderr); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"convhub: error: {path}:2: unknown format 'tflit'" in proc.stderr
    assert "hint: did you mean 'tflite'?" in proc.stderr and "TF False" in proc.stderr
    assert_schema(json.loads(proc.stdout))


def test_executor_ray_without_ray_says_how_to_install_it(project):
    path = write(project, GOOD)
    code = (f"import sys; sys.modules['ray'] = None; from convhub.cli import main;"
            f" code = main(['batch', {str(path)!r}, '-o', {str(project / 'out')!r}, '--executor', 'ray']);"
            " print('TF', 'tensorflow' in sys.modules, file=sys.stderr); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--executor ray needs Ray, which is not installed" in proc.stderr
    assert 'pip install "convhub[ray]"' in proc.stderr and "TF False" in proc.stderr


def test_an_output_folder_batch_did_not_write_is_refused_and_the_model_is_never_the_output(project):
    path = write(project, GOOD)
    (project / "mine").mkdir()
    (project / "mine" / "notes.txt").write_text("keep me")
    proc = run_cli("batch", path, "-o", project / "mine", "--json")
    assert proc.returncode == 2 and "holds files convhub batch did not write" in proc.stderr
    assert (project / "mine" / "notes.txt").read_text() == "keep me"
    proc = run_cli("batch", path, "-o", project / "a.keras")
    assert proc.returncode == 2 and "is the model file" in proc.stderr
    proc = run_cli("batch", path, "-o", project, "--force")  # a failed cell would remove what its path holds
    assert proc.returncode == 2 and f"the output folder {project} holds the" in proc.stderr


def test_dry_run_shows_each_cell_its_route_and_that_it_is_to_run(project, tmp_path):
    proc = run_cli("batch", write(project, GOOD), "-o", tmp_path / "out", "--dry-run", "--json",
                   "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    payload = assert_schema(json.loads(proc.stdout))
    assert payload["dry_run"] and [c["status"] for c in payload["cells"]] == ["to run"] * 6
    assert payload["cells"][0]["route"] == "keras → savedmodel → tflite"
    assert "decided when the model is read" in payload["cells"][3]["route"]
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_a_key_follows_the_content_of_a_model_and_of_the_modules_its_reference_imports(project, tmp_path):
    from convhub import batchrun, cache
    from convhub.plugins import default_registry

    path = write(project, GOOD)
    store = cache.Cache(tmp_path / "cache")

    def keys() -> list[str]:
        planned, _ = batchrun.plan(load(path), default_registry(), store)
        return [p.key for p in planned]

    first = keys()
    assert len(set(first)) == 6 and keys() == first
    (project / "helpers.py").write_text("def build():\n    return 1\n")  # imported by net.py
    second = keys()
    assert second[:3] == first[:3] and all(a != b for a, b in zip(second[3:], first[3:]))
    (project / "a.keras").write_bytes(b"PK\x03\x04 another model")
    third = keys()
    assert all(a != b for a, b in zip(third[:3], second[:3])) and third[3:] == second[3:]


def test_a_reference_s_installed_imports_count_by_version_and_a_fifo_in_a_model_folder_is_refused(tmp_path):
    from convhub import cache
    from convhub.errors import InputError

    module = tmp_path / "m.py"
    module.write_text("import numpy\nimport os\n")
    found = cache.source_of(f"{module}:model", cache.Hasher())
    assert "numpy" in found.packages and found.files == [module]
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"x")
    import os

    os.mkfifo(folder / "pipe")
    with pytest.raises(InputError, match="not a regular file"):
        cache.source_of(str(folder), cache.Hasher())


def test_cache_info_and_clear(tmp_path):
    for args in (["info"], ["clear"], ["clear", "--unused-for", "30"]):
        proc = run_cli("cache", *args, "--cache-dir", tmp_path / "c", "--json")
        assert proc.returncode == 0, proc.stderr
        payload = assert_schema(json.loads(proc.stdout))
        assert payload["command"] == "cache" and payload["path"] == str(tmp_path / "c")
    assert ROOT  # the suite's root, for run_cli's console script


def test_the_library_plans_a_job_like_the_cli(project, tmp_path):
    import convhub

    result = convhub.batch(write(project, GOOD), tmp_path / "out", dry_run=True, cache_dir=tmp_path / "cache")
    assert isinstance(result, convhub.BatchResult) and result.ok and len(result) == 6
    assert [c.status for c in result] == ["to run"] * 6 and result.counts()["cells"] == 6
    assert "6 cells: 0 cached, 6 to run" in result.summary()
    assert result.to_json()["cells"][0]["route"] == "keras → savedmodel → tflite"
    with pytest.raises(convhub.UsageError, match="unknown executor 'spark'"):
        convhub.batch(write(project, GOOD), tmp_path / "out", executor="spark")
