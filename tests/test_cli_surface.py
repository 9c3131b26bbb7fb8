"""The command line as a person meets it: help with examples that fits 80 columns, suggestions
for misspellings, format aliases, --via, a suffix that contradicts the target, closed pipes and
shell completion. None of these loads a framework."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import CONVHUB, run_cli


def error_and_hint(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    """The error line and the hint line of a refused command (exit 2)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("convhub: error: ") and "Traceback" not in proc.stderr, proc.stderr
    hints = [line for line in lines[1:] if line.startswith("convhub: hint: ")]
    return lines[0], hints[0] if hints else ""


def test_convert_help_starts_with_two_examples_and_fits_80_columns():
    proc = subprocess.run([str(CONVHUB), "convert", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80"})
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines[0] == "examples:"
    assert lines[1].strip().startswith("convhub convert ") and lines[2].strip().startswith("convhub convert ")
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert "--quantize" in proc.stdout and "--via FORMAT" in proc.stdout  # plugins' flags, and the route's


@pytest.mark.parametrize("command", ["check", "route", "formats", "plugins", "matrix", "demo", "completion"])
def test_every_command_help_has_examples(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("examples:\n  ")


@pytest.mark.parametrize("args, error, hint", [
    (["conver", "x"], "invalid choice: 'conver'", "did you mean 'convert'?"),
    (["route", "keras→tflie"], "unknown format 'tflie'", "did you mean 'tflite'?"),
    (["convert", "keras→tflite", "m.keras", "-o", "m.tflite", "--quantise", "int8"],
     "unrecognized arguments: --quantise int8", "did you mean '--quantize'?"),
    (["convert", "keras→tflite", "m.keras", "-o", "m.tflite", "--option", "quantise=int8"],
     "no plugin declares an option 'quantise'", "did you mean 'quantize'?"),
    (["route", "keras→tflite", "--to", "tflite"],  # a real option, of other commands: never "did you mean '--to'?"
     "unrecognized arguments: --to tflite", "--to is an option of convhub convert"),
], ids=["command", "format", "flag", "option-key", "another-command-s-flag"])
def test_misspellings_get_a_suggestion(args, error, hint):
    line, suggestion = error_and_hint(run_cli(*args))
    assert error in line and hint in suggestion


def test_format_names_are_case_insensitive_and_have_aliases():
    for pair in ("keras→TFLite", "Keras->tf.js", "saved_model→ONNX", "SavedModel→TensorFlowJS"):
        proc = run_cli("route", pair, "--json")
        assert proc.returncode == 0, (pair, proc.stderr)
    payload = json.loads(run_cli("route", "KERAS→TF.JS", "--json").stdout)
    assert (payload["source"], payload["target"]) == ("keras", "tfjs")  # the formats' own names in the output


def test_via_forces_the_route_through_a_format():
    payload = json.loads(run_cli("route", "keras→onnx", "--via", "tflite", "--json").stdout)
    assert payload["routes"][0]["route"] == ["keras", "savedmodel", "tflite", "onnx"]
    assert json.loads(run_cli("route", "keras→onnx", "--json").stdout)["routes"][0]["route"] == [
        "keras", "savedmodel", "onnx"]  # the cheapest, without --via
    line, hint = error_and_hint(run_cli("route", "keras→tfjs", "--via", "onnx"))
    assert "no usable route from keras to tfjs goes through onnx" in line and "keras → savedmodel → tfjs" in hint


def test_an_output_suffix_that_contradicts_the_target_is_refused(tmp_path, cnn_file):
    line, hint = error_and_hint(run_cli("convert", cnn_file, "--to", "onnx", "-o", tmp_path / "x.tflite"))
    assert "the output" in line and "has the suffix of a tflite model, but the target is onnx" in line
    assert f"name it {tmp_path / 'x.onnx'}" in hint
    line, hint = error_and_hint(run_cli("convert", cnn_file, "--to", "tfjs", "-o", tmp_path / "x.onnx"))
    assert "the target is tfjs" in line and "a tfjs folder" in hint
    assert list(tmp_path.iterdir()) == []


def test_a_closed_stdout_ends_quietly_with_141():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: EPIPE for sure
    proc = subprocess.run([str(CONVHUB), "formats"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def _bash_completions(line: str) -> list[str]:
    script = subprocess.run([str(CONVHUB), "completion", "bash"], capture_output=True, text=True, check=True).stdout
    words = line.split() + ([""] if line.endswith(" ") else [])
    code = (f"{script}\nCOMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=({' '.join(map(repr, words))});"
            f" COMP_CWORD={len(words) - 1}; _python_argcomplete convhub; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    env = {**os.environ, "PATH": f"{CONVHUB.parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    return sorted(w.strip() for w in proc.stdout.splitlines() if w.strip())


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_flags_and_installed_formats():
    from convhub.plugins import default_registry

    installed = sorted(f for f in default_registry().formats if f.startswith("t"))
    assert _bash_completions("convhub convert --to t") == installed  # tflite, tfjs (and tfserving once it is)
    assert {"tflite", "tfjs"} <= set(installed)
    assert _bash_completions("convhub conv") == ["convert"]
    assert _bash_completions("convhub convert --quan") == ["--quantize"]
    assert _bash_completions("convhub convert --to tflite,o") == ["tflite,onnx"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts(shell):
    proc = run_cli("completion", shell)
    assert proc.returncode == 0 and "_ARGCOMPLETE" in proc.stdout and "convhub" in proc.stdout
    if shutil.which(shell) is None:
        return  # the script is generated; the shell to run it is not installed here
    check = ["zsh", "-n", "-c", proc.stdout] if shell == "zsh" else ["fish", "--no-execute", "-c", proc.stdout]
    assert subprocess.run(check, capture_output=True, timeout=60).returncode == 0
