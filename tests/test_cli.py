"""The command-line contract: listings import no framework, bad input is one line and exit 2."""

import json
import subprocess
import sys
import zipfile

from conftest import ROOT, run_cli

HEAVY = {"tensorflow", "keras", "tf_keras", "jax", "jaxlib", "flax", "orbax", "onnx", "onnxruntime",
         "tf2onnx", "tensorflowjs", "ai_edge_litert",
         "numpy"}  # not a framework, but a quarter second that listings don't need


def test_listing_commands_and_help_import_no_framework():
    code = f"""
import sys
from convhub.cli import main
for argv in (["formats"], ["formats", "--json"], ["plugins"], ["plugins", "--json"],
             ["route", "keras→tflite", "--all"], ["route", "keras->tflite", "--json"]):
    assert main(argv) == 0, argv
for argv in (["--help"], ["convert", "--help"], ["route", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("HEAVY", sorted(m for m in sys.modules if m.split(".")[0] in {sorted(HEAVY)!r}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_formats_and_plugins_name_their_providers():
    formats = json.loads(run_cli("formats", "--json").stdout)["formats"]
    by_name = {f["name"]: f for f in formats}
    assert by_name["keras"]["plugin"] == "tensorflow" and by_name["keras"]["source"]
    assert by_name["tflite"]["plugin"] == "tflite" and by_name["tflite"]["runner"]
    assert "savedmodel" in by_name["keras"]["targets"]
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--json").stdout)["plugins"]}
    assert plugins["tflite"]["version"] == "0.1.0"
    assert plugins["tflite"]["conversions"] == ["savedmodel->tflite"]
    assert plugins["tensorflow"]["formats"] == ["keras", "savedmodel"]
    text = run_cli("plugins").stdout
    assert "tensorflow" in text and "keras->savedmodel" in text


def test_route_json_and_text():
    proc = run_cli("route", "keras->tflite", "--json")
    assert proc.returncode == 0
    payload = json.loads(proc.stdout)
    assert payload["routes"][0]["route"] == ["keras", "savedmodel", "tflite"]
    assert [h["plugin"] for h in payload["routes"][0]["hops"]] == ["tensorflow", "tflite"]
    proc = run_cli("route", "keras→tflite")
    assert "keras → savedmodel → tflite" in proc.stdout


def assert_one_line_error(proc, code, *needles):
    """The error is one line; progress lines ("[ 0.1s] ...") may come before it, a hint's own
    line ("convhub: hint: ...") after it."""
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines()
             if not line.startswith(("[", "convhub: hint: "))]
    assert len(lines) == 1 and lines[0].startswith("convhub: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_no_route_and_unknown_formats_and_bad_arrows(tmp_path):
    assert_one_line_error(run_cli("route", "tflite→keras"), 2, "no route from tflite to keras")
    assert_one_line_error(run_cli("route", "keras→nosuch"), 2, "unknown format 'nosuch'")
    assert_one_line_error(run_cli("convert", "keras→nosuch", "x.keras", "-o", tmp_path / "y"), 2, "unknown format")
    for arrow in ("keras=>tflite", "keras→", "→tflite", "keras→savedmodel→tflite"):
        assert_one_line_error(run_cli("convert", arrow, "x.keras", "-o", tmp_path / "y"), 2, "malformed")
    assert_one_line_error(run_cli("convert", "x.keras"), 2, "required: -o/--output")
    assert_one_line_error(run_cli("frobnicate"), 2, "invalid choice")


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "out.tflite"
    assert_one_line_error(run_cli("convert", "keras→tflite", tmp_path / "missing.keras", "-o", out), 2,
                          "no such file")
    text = tmp_path / "notes.keras"
    text.write_text("this is not a model")
    proc = run_cli("convert", "keras→tflite", text, "-o", out, "--quiet")
    assert_one_line_error(proc, 2, "is not a Keras model file")
    assert len(proc.stderr.strip().splitlines()) == 1
    archive = tmp_path / "archive.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    assert_one_line_error(run_cli("convert", "keras→tflite", archive, "-o", out), 2, "no config.json")
    unknown = tmp_path / "weights.bin"
    unknown.write_bytes(b"\0" * 64)
    assert_one_line_error(run_cli("convert", unknown, "--to", "tflite", "-o", out), 2, "cannot tell which format")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.keras", "notes.keras", "weights.bin"]


def test_existing_output_is_kept_without_force(tmp_path, cnn_file):
    out = tmp_path / "out.tflite"
    out.write_text("precious")
    proc = run_cli("convert", "keras→tflite", cnn_file, "-o", out, "--json")
    assert_one_line_error(proc, 2, "exists; use --force")
    assert json.loads(proc.stdout) == {"schema_version": 1, "command": "convert", "ok": False,
                                       "error": f"{out} exists; use --force to overwrite it", "exit_code": 2}
    assert out.read_text() == "precious"


def test_readme_states_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "uv run convhub demo" in readme
    assert "uv run pytest" in readme and "uv run pytest" in ci
