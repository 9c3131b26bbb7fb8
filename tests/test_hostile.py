"""The hostile-input matrix: bad files, options and outputs, converters that crash, exit and hang,
signals mid-conversion and mid-publish, misbehaving plugins, library calls.

Every case asserts the exit code, one line on stderr, valid JSON under --json, the source
unchanged and each destination complete or as it was. The misbehaviour is real: the
`convhub-hostile` test plugin (tests/plugins/) segfaults, aborts, exits and sleeps, installed
as a third party would install it; the JAX modules below call os.abort(), sys.exit() and sleep.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CONVHUB, FOREGROUND, ROOT


@pytest.fixture(scope="module")
def site(hostile_site):
    """The hostile plugin installed from its own pyproject.toml into a folder on PYTHONPATH."""
    return hostile_site


@pytest.fixture
def toy(tmp_path) -> Path:
    path = tmp_path / "model.toy"
    rng = np.random.default_rng(0)
    path.write_text(json.dumps({"w": rng.normal(size=(4, 3)).round(4).tolist()}))
    return path


@pytest.fixture
def saved_model_dir(tmp_path) -> Path:
    """Only its place matters here: the output is refused before anything reads it."""
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    return folder


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc, self.code, self.stderr = proc, proc.returncode, proc.stderr
        self.json = json.loads(proc.stdout) if proc.stdout.strip() else None

    @property
    def result(self) -> dict:
        """The one target's result of a conversion's JSON (always a `results` list)."""
        (only,) = self.json["results"]
        return only


def cli(site, *args, tmpdir=None, timeout=120, env=None) -> Run:
    environment = {**os.environ, "PYTHONPATH": str(site), **(env or {})}
    if tmpdir is not None:
        environment["TMPDIR"] = str(tmpdir)
    proc = subprocess.run([str(CONVHUB), *map(str, args)], capture_output=True, text=True, env=environment,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)
    return Run(proc)


def refused(run: Run, needle: str, code: int = 2) -> None:
    """Exit `code`, one line naming the problem, the same in the JSON object."""
    assert run.code == code, run.stderr
    lines = [line for line in run.stderr.splitlines()  # not warnings, progress, or the hint's own line
             if not line.startswith(("convhub: warning:", "convhub: hint:")) and not re.match(r"\[\s*[\d.]+s\] ", line)]
    assert len(lines) == 1 and needle in lines[0], run.stderr
    assert run.json["ok"] is False and run.json["exit_code"] == code and needle in run.json["error"]


def digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def results_by_target(run: Run) -> dict[str, dict]:
    payload = run.json
    return {r["target"]: r for r in payload["results"]}


# --- Files: the model and --inputs --------------------------------------------------------------


def test_a_missing_model(site, tmp_path):
    refused(cli(site, "convert", "toy→toy-copy", tmp_path / "nope.toy", "-o", tmp_path / "o.toy", "--json"),
            "no such file or directory")


def test_a_fifo_as_the_model_is_refused_without_blocking(site, tmp_path):
    fifo = tmp_path / "model.toy"
    os.mkfifo(fifo)
    refused(cli(site, "convert", "toy→toy-copy", fifo, "-o", tmp_path / "o.toy", "--json", timeout=30), "is a FIFO")


def test_dev_zero_as_the_model_is_refused_at_once(site, tmp_path):
    started = time.monotonic()
    refused(cli(site, "convert", "keras→tflite", "/dev/zero", "-o", tmp_path / "o.tflite", "--json"),
            "is a character device")
    assert time.monotonic() - started < 20


def test_a_socket_as_the_model(site, tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "model.toy"))
    try:
        refused(cli(site, "convert", "toy→toy-copy", tmp_path / "model.toy", "-o", tmp_path / "o.toy", "--json"),
                "is a socket")
    finally:
        sock.close()


def test_an_empty_model_file(site, tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    refused(cli(site, "convert", "keras→tflite", tmp_path / "m.keras", "-o", tmp_path / "o.tflite", "--json"), "is empty")


def test_a_folder_that_is_no_model(site, tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("hello")
    refused(cli(site, "convert", tmp_path / "stuff", "--to", "tflite", "-o", tmp_path / "o.tflite", "--json"),
            "cannot tell which format")


def test_a_fifo_as_inputs_is_refused_without_blocking(site, tmp_path, toy):
    fifo = tmp_path / "inputs.npz"
    os.mkfifo(fifo)
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "o.toy", "--inputs", fifo, "--json", timeout=30),
            "is a FIFO")


def test_dev_zero_as_inputs(site, tmp_path, toy):
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "o.toy", "--inputs", "/dev/zero", "--json"),
            "is a character device")


def test_missing_inputs(site, tmp_path, toy):
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "o.toy", "--inputs", tmp_path / "x.npz",
                "--json"), "no such file")


@pytest.mark.parametrize("arrays, needle", [
    ({"x": np.array([["a", "b", "c", "d"]])}, "not numeric"),
    ({"x": np.full((2, 4), np.nan, "float32")}, "NaN"),
    ({"x": np.zeros((0, 4), "float32")}, "no values"),
    ({"z": np.zeros((2, 4), "float32")}, "the model's inputs are ['x']"),
    ({"x": np.zeros((2, 5), "float32")}, "has shape (2, 5)"),
], ids=["strings", "all-nan", "zero-batch", "wrong-name", "wrong-shape"])
def test_inputs_that_prove_nothing_or_do_not_fit(site, tmp_path, toy, arrays, needle):
    npz = tmp_path / "inputs.npz"
    np.savez(npz, **arrays)
    out = tmp_path / "o.toy"
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", out, "--inputs", npz, "--json"), needle)
    assert not out.exists()


def test_an_npz_that_is_not_one(site, tmp_path, toy):
    bad = tmp_path / "inputs.npz"
    bad.write_text("not a zip")
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "o.toy", "--inputs", bad, "--json"),
            "is not a NumPy .npz file")


# --- Options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, needle", [
    (["--seed", "-5"], "the seed must be a whole number ≥ 0"),
    (["--atol", "nan"], "atol must be a finite number ≥ 0"),
    (["--atol", "inf"], "atol must be a finite number ≥ 0"),
    (["--rtol", "-1"], "rtol must be a finite number ≥ 0"),
    (["--jobs", "0"], "jobs must be a whole number > 0"),
    (["--timeout", "0"], "timeout must be a number > 0"),
    (["--timeout", "nan"], "timeout must be a number > 0"),
    (["--option", "novalue"], "write KEY=VALUE or TARGET.KEY=VALUE"),
    (["--option", "toy-nope.key=1"], "which is not a target of this run"),
    (["--option", "nobody_reads_this=1"], "option 'nobody_reads_this' is not used by any conversion"),
], ids=["seed", "atol-nan", "atol-inf", "rtol-negative", "jobs-0", "timeout-0", "timeout-nan", "option-no-value",
        "option-other-target", "option-unread"])
def test_bad_run_options_are_refused_before_anything_runs(site, tmp_path, toy, flags, needle):
    out = tmp_path / "o.toy"
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", out, "--json", *flags), needle)
    assert not out.exists()


@pytest.mark.parametrize("flags, needle", [
    (["--to", "tfjs", "--shard-size", "0"], "--shard-size (tfjs_shard_bytes): must be ≥ 1, not '0'"),
    (["--to", "onnx", "--opset", "0"], "--opset (opset): must be from 14 to 18, not '0'"),
    (["--to", "tflite,onnx", "--quantize", "int8"], "option 'quantize' applies to tflite but not to onnx"),
    (["--to", "tflite", "--signature", "serving_default"], "option 'signature' does not apply to a keras source"),
    (["--to", "tflite", "--option", "int8_io=maybe"], "write true or false"),
    (["--to", "tflite", "--opset", "17"], "option 'opset' is not used by any conversion"),
], ids=["shard-size-0", "opset-0", "quantize-two-targets", "signature-on-keras", "bool-option", "opset-tflite"])
def test_bad_target_options_are_refused_before_any_framework_loads(site, tmp_path, cnn_file, flags, needle):
    started = time.monotonic()
    out = tmp_path / "out"
    refused(cli(site, "convert", cnn_file, "-o", out, "--json", *flags), needle)
    assert time.monotonic() - started < 8, "refused only after a framework loaded"
    assert not out.exists()


# --- A check that cannot be fooled ----------------------------------------------------------


def test_a_different_model_fails(site, tmp_path, toy):
    """And the edge's explain_drift, which segfaults, leaves the verdict as it was: the crash is a
    progress line, not the error, and no cause is made up."""
    run = cli(site, "convert", "toy→toy-drift", toy, "-o", tmp_path / "o.toy", "--json")
    assert run.code == 1 and "of values beyond" in run.json["error"] and "max abs diff" in run.json["error"]
    assert run.json["results"][0]["parity"][-1]["cause"] is None
    assert "the drift could not be explained: crashed (SIGSEGV)" in run.stderr, run.stderr


def test_a_huge_atol_passes_a_different_model_but_says_the_evidence_is_weak(site, tmp_path, toy):
    run = cli(site, "convert", "toy→toy-drift", toy, "-o", tmp_path / "o.toy", "--atol", "1e9", "--json")
    assert run.code == 0
    (entry,) = run.result["parity"]
    assert entry["evidence"] == "weak" and "an all-zero output would pass" in entry["weak_evidence"][0]
    assert "weak evidence: toy-drift output 'y'" in run.stderr


def test_nan_outputs_where_the_source_has_numbers_fail(site, tmp_path, toy):
    run = cli(site, "convert", "toy→toy-nan", toy, "-o", tmp_path / "o.toy", "--json")
    assert run.code == 1 and "non-finite values (NaN/inf) differ from the reference" in run.json["error"]


def test_a_model_whose_outputs_do_not_depend_on_its_inputs_is_weak_evidence(site, tmp_path):
    tiny = tmp_path / "tiny.toy"
    tiny.write_text(json.dumps({"w": [[1e-11, -2e-11, 3e-12]] * 4}))  # logits of ~1e-11, as random init gives
    run = cli(site, "convert", "toy→toy-copy", tiny, "-o", tmp_path / "o.toy", "--json")
    assert run.code == 0 and run.result["parity"][0]["evidence"] == "weak"
    healthy = cli(site, "convert", "toy→toy-copy", tiny, "-o", tmp_path / "p.toy",
                  "--json", "--atol", "1e-14", "--rtol", "0")
    assert healthy.result["parity"][0]["evidence"] == "strong"  # a tolerance below the signal: real evidence


# --- Outputs ----------------------------------------------------------------------------------


def test_the_output_is_the_input(site, tmp_path, toy):
    before = digest(toy)
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", toy, "--force", "--json"), "is the input")
    assert digest(toy) == before


def test_an_output_inside_the_input_folder(site, tmp_path, saved_model_dir):
    refused(cli(site, "convert", "savedmodel→tflite", saved_model_dir, "-o", saved_model_dir / "m.tflite", "--json"),
            "lies inside the input")


def test_an_output_folder_holding_the_input(site, tmp_path, toy):
    before = digest(toy)
    refused(cli(site, "convert", "toy→toy-big", toy, "-o", tmp_path, "--force", "--json"), "contains the input")
    assert digest(toy) == before


def test_a_read_only_destination_is_refused_up_front(site, toy):
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", "/proc/convhub-out.toy", "--json"), "cannot write the output")


def test_an_unwritable_report_is_refused_before_converting(site, tmp_path, toy):
    out = tmp_path / "o.toy"
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", out, "--report", "/proc/report.html", "--json"),
            "cannot write the output /proc/report.html")
    assert not out.exists()


def test_a_report_path_that_is_a_folder(site, tmp_path, toy):
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "o.toy", "--report", tmp_path, "--json"),
            "is a directory")


def test_unwritable_intermediates_folder(site, tmp_path, toy):
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "o.toy", "--keep-intermediates",
                "/proc/kept", "--json"), "cannot write")


def test_an_existing_output_without_force(site, tmp_path, toy):
    out = tmp_path / "o.toy"
    out.write_text("precious")
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", out, "--json"), "exists; use --force")
    assert out.read_text() == "precious"


def test_an_output_whose_parent_is_a_file(site, tmp_path, toy):
    (tmp_path / "file").write_text("x")
    refused(cli(site, "convert", "toy→toy-copy", toy, "-o", tmp_path / "file" / "o.toy", "--json"), "is a file")


# --- Converters and runners that crash, exit, hang ----------------------------------------------


CRASHES = {
    "toy-segv": "toy → toy-segv (hostile) failed: the converter crashed (SIGSEGV)",
    "toy-abort": "toy → toy-abort (hostile) failed: the converter aborted (SIGABRT)",
    "toy-exit": "toy → toy-exit (hostile) failed: the converter called sys.exit(0)",
    "toy-raise": "toy → toy-raise (hostile) failed: RuntimeError: this converter always fails",
}


def test_each_broken_converter_fails_alone_and_the_healthy_target_is_written(site, tmp_path, toy):
    out = tmp_path / "out"
    run = cli(site, "convert", toy, "--to", ",".join(["toy-copy", *CRASHES]), "-o", out, "--json")
    assert run.code == 1, run.stderr
    results = results_by_target(run)
    assert results["toy-copy"]["ok"] and Path(results["toy-copy"]["output"]).is_file()
    for target, reason in CRASHES.items():
        assert results[target]["ok"] is False and results[target]["error"] == reason, results[target]["error"]
        assert results[target]["output"] is None
    # toy-copy's and its provenance sidecar, and nothing half-written
    assert sorted(p.name for p in out.iterdir()) == ["model.toy", "model.toy.convhub.json"]
    assert "Traceback" not in run.stderr


def test_a_hanging_converter_is_stopped_at_the_timeout(site, tmp_path, toy):
    started = time.monotonic()
    run = cli(site, "convert", toy, "--to", "toy-copy,toy-hang", "-o", tmp_path / "out", "--timeout", "3", "--json")
    assert run.code == 1 and time.monotonic() - started < 40
    results = results_by_target(run)
    assert results["toy-hang"]["error"] == "toy → toy-hang (hostile) failed: the converter ran past the 3 s timeout (--timeout) and was stopped"
    assert results["toy-copy"]["ok"]


def test_a_runner_that_crashes_fails_the_check_not_the_run(site, tmp_path, toy):
    out = tmp_path / "o.toy"
    run = cli(site, "convert", "toy→toy-badrun", toy, "-o", out, "--json")
    assert run.code == 1
    assert "crashing-runner failed: its runtime crashed (SIGSEGV)" in run.json["error"]
    assert run.result["parity"][0]["checked"] is True and run.result["parity"][0]["passed"] is False
    assert not out.exists()


def test_a_failing_second_hop_names_that_hop(site, tmp_path, toy):
    run = cli(site, "convert", "toy→toy-chain", toy, "-o", tmp_path / "o.toy", "--json")
    assert run.code == 1 and run.result["route"] == ["toy", "toy-copy", "toy-chain"]
    assert run.result["error"] == "toy-copy → toy-chain (hostile) failed: RuntimeError: this converter always fails"
    assert run.result["parity"][0]["passed"] is True  # the first hop converted and matched


def test_a_plugin_whose_detect_raises_breaks_nothing_else(site, tmp_path, toy):
    run = cli(site, "convert", toy, "--to", "toy-copy", "-o", tmp_path / "o.toy", "--json")
    assert run.code == 0 and run.json["ok"], run.stderr


def test_a_plugin_whose_refuse_raises_breaks_no_other_route(site, tmp_path, toy):
    run = cli(site, "convert", toy, "--to", "toy-copy", "-o", tmp_path / "o.toy", "--json")
    assert run.code == 0, run.stderr
    bad = cli(site, "convert", toy, "--to", "toy-badrefuse", "-o", tmp_path / "b.toy", "--json")
    assert bad.code == 2 and "refuse() raised KeyError" in bad.json["error"], bad.stderr


# --- Signals ----------------------------------------------------------------------------------


def _start(site, tmpdir, *args, env=None) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(site), "TMPDIR": str(tmpdir), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", FOREGROUND, str(CONVHUB), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=environment, cwd=ROOT, stdin=subprocess.DEVNULL)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _gone(pids: list[int], within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def _wait_for_workers(proc: subprocess.Popen, count: int = 1, within: float = 30) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        kids = _children(proc.pid)
        if len(kids) >= count:
            return kids
        time.sleep(0.1)
    raise AssertionError("no worker started")


@pytest.mark.parametrize("signum, code", [
    (signal.SIGTERM, 143),
    (signal.SIGINT, 130),
], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_conversion_stops_everything_and_changes_nothing(site, tmp_path, toy, signum, code):
    work = tmp_path / "tmp"
    work.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.toy").write_text("old copy")
    proc = _start(site, work, "convert", toy, "--to", "toy-copy,toy-hang", "-o", out, "--force", "--json", "--jobs", "1")
    workers = _wait_for_workers(proc)
    time.sleep(2)  # the hang is under way
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    payload = json.loads(stdout)
    assert payload["interrupted"] is True and payload["exit_code"] == code and payload["ok"] is False
    assert "no output was changed" in payload["error"]
    assert (out / "model.toy").read_text() == "old copy" and sorted(p.name for p in out.iterdir()) == ["model.toy"]
    assert list(work.iterdir()) == [], "the work folder outlived the run"
    assert _gone(workers), "a worker outlived the run"


def test_a_matrix_stopped_halfway_writes_the_cells_it_decided_and_says_so(site, tmp_path, toy):
    """SIGTERM while a matrix's second model hangs: the first model's cells are written, marked
    incomplete, and the last line says what was written (not "no output was changed")."""
    second = tmp_path / "second.toy"
    second.write_text(toy.read_text())
    page, cells = tmp_path / "m.md", tmp_path / "m.json"
    # The first model's hang fails at the 3 s timeout; the second's is under way when the signal comes.
    proc = _start(site, tmp_path, "matrix", toy, second, "--to", "toy-copy,toy-hang", "--timeout", "3", "--jobs", "1",
                  "--markdown", page, "--json-file", cells, "--json")
    seen = ""
    while "[2/2]" not in seen:  # the first model's two cells are decided
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    payload = json.loads(stdout)
    assert payload["interrupted"] is True
    assert payload["error"].endswith(f"wrote the 2 cells decided so far to {page} and {cells}, marked incomplete")
    written = json.loads(cells.read_text())
    assert written["complete"] is False and written["summary"]["ran"] == 2
    assert "Incomplete: the run was interrupted" in page.read_text()


def test_sigkill_of_convhub_takes_its_workers_with_it(site, tmp_path, toy):
    out = tmp_path / "o.toy"
    out.write_text("old")
    proc = _start(site, tmp_path, "convert", "toy→toy-hang", toy, "-o", out, "--force")
    workers = _wait_for_workers(proc)
    time.sleep(1)
    proc.kill()
    proc.communicate(timeout=30)
    assert _gone(workers), "a worker outlived a killed convhub"
    assert out.read_text() == "old"


def _wait_for_staging(folder: Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(p.name.startswith(".convhub-staging-") for p in folder.iterdir()):
            return
        time.sleep(0.01)
    raise AssertionError("publishing never started")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_publish_leaves_every_destination_as_it_was(site, tmp_path, toy, signum, code):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.toy").write_text("old copy")
    (out / "model_toy-big").mkdir()
    (out / "model_toy-big" / "old.txt").write_text("old big")
    proc = _start(site, tmp_path, "convert", toy, "--to", "toy-copy,toy-big", "-o", out, "--force", "--json",
                  env={"CONVHUB_HOSTILE_BIG_FILES": "400"})
    _wait_for_staging(out)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("publishing finished before the signal arrived")  # the outputs are complete: allowed
    assert proc.returncode == code, stderr
    assert json.loads(stdout)["interrupted"] is True
    assert (out / "model.toy").read_text() == "old copy"
    assert [p.name for p in (out / "model_toy-big").iterdir()] == ["old.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["model.toy", "model_toy-big"]


def test_sigkill_mid_publish_leaves_each_destination_whole_and_the_next_run_cleans_up(site, tmp_path, toy):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model_toy-big").mkdir()
    (out / "model_toy-big" / "old.txt").write_text("old big")
    proc = _start(site, tmp_path, "convert", toy, "--to", "toy-copy,toy-big", "-o", out, "--force",
                  env={"CONVHUB_HOSTILE_BIG_FILES": "400"})
    _wait_for_staging(out)
    proc.kill()
    proc.communicate(timeout=30)
    big = out / "model_toy-big"
    names = sorted(p.name for p in big.iterdir())
    assert names == ["old.txt"] or (len(names) == 401 and "model.json" in names)  # as it was, or complete
    copy = out / "model.toy"
    assert not copy.exists() or digest(copy) == digest(toy)
    again = cli(site, "convert", toy, "--to", "toy-copy,toy-big", "-o", out, "--force", "--json",
                env={"CONVHUB_HOSTILE_BIG_FILES": "3"})
    assert again.code == 0, again.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".convhub-staging-")], "stale staging left behind"


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB filesystem of its own (a tmpfs), so a full disk is real, not simulated."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_while_publishing_changes_no_output(site, toy, small_disk):
    (small_disk / "model.toy").write_text("old copy")
    run = cli(site, "convert", toy, "--to", "toy-copy,toy-big", "-o", small_disk, "--force", "--json",
              env={"CONVHUB_HOSTILE_BIG_FILES": "5"})  # 5 MiB do not fit
    assert run.code == 1, run.stderr
    assert "No space left on device; no output was changed" in run.json["error"]
    assert (small_disk / "model.toy").read_text() == "old copy"
    assert sorted(p.name for p in small_disk.iterdir()) == ["model.toy"]  # no staging left behind


# --- JAX modules that misbehave (real JAX, in a worker) ---------------------------------------


JAX_MODULE = '''
import os, sys, time
import numpy as np

def exits():
    sys.exit(0)

def aborts():
    os.abort()

def sleeps():
    time.sleep(3600)

def _fn(misbehave):
    from convhub_jax import JaxFunction
    import jax.numpy as jnp

    def fn(params, x):
        misbehave()
        return jnp.tanh(x @ params)

    return JaxFunction(fn, np.ones((4, 2), "float32"), inputs={"x": ((None, 4), "float32")})

def aborting_fn():
    return _fn(os.abort)
'''


@pytest.fixture
def jax_module(tmp_path) -> Path:
    path = tmp_path / "hostile_jax.py"
    path.write_text(JAX_MODULE)
    return path


def test_a_user_module_that_calls_sys_exit(site, tmp_path, jax_module):
    refused(cli(site, "convert", f"{jax_module}:exits", "--to", "tflite", "-o", tmp_path / "o.tflite", "--json"),
            "its code called sys.exit(0)")


def test_a_user_module_that_aborts(site, tmp_path, jax_module):
    refused(cli(site, "convert", f"{jax_module}:aborts", "--to", "tflite", "-o", tmp_path / "o.tflite", "--json"),
            "aborted (SIGABRT)")


def test_a_user_module_that_hangs_is_stopped(site, tmp_path, jax_module):
    refused(cli(site, "convert", f"{jax_module}:sleeps", "--to", "tflite", "-o", tmp_path / "o.tflite", "--timeout", "3",
                "--json"), "ran past the 3 s timeout")


def test_a_jax_function_that_aborts_when_traced(site, tmp_path, jax_module):
    out = tmp_path / "o.tflite"
    refused(cli(site, "convert", f"{jax_module}:aborting_fn", "--to", "tflite", "-o", out, "--json", timeout=300),
            "its code aborted (SIGABRT)")
    assert not out.exists()


# --- Library calls ----------------------------------------------------------------------------


@pytest.fixture
def hostile_registry(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    import convhub_hostile
    from convhub.plugins import build_registry

    return build_registry([("hostile", convhub_hostile)], entry_points=False)


def test_library_a_crash_raises_conversion_error_and_leaves_no_folder(hostile_registry, toy, tmp_path):
    import tempfile

    import convhub

    before = set(Path(tempfile.gettempdir()).glob("convhub-*"))
    with pytest.raises(convhub.ConversionError, match=r"the converter crashed \(SIGSEGV\)") as info:
        convhub.convert(toy, to="toy-segv", registry=hostile_registry)
    assert info.value.result.target == "toy-segv"
    assert set(Path(tempfile.gettempdir()).glob("convhub-*")) == before


def test_library_a_failed_second_hop_is_a_conversion_error_not_a_parity_error(hostile_registry, toy, tmp_path):
    import convhub

    with pytest.raises(convhub.ConversionError) as info:
        convhub.convert(toy, to="toy-chain", output=tmp_path / "o.toy", registry=hostile_registry)
    assert not isinstance(info.value, convhub.ParityError)


def test_library_workers_are_reused_and_shut_down(hostile_registry, toy, tmp_path):
    import convhub
    from convhub import workers

    convhub.shutdown()
    convhub.convert(toy, to="toy-copy", output=tmp_path / "a.toy", registry=hostile_registry, jobs=1)
    pool = workers.shared_pool()
    first = [w.process.pid for w in pool.idle]
    convhub.convert(toy, to="toy-copy", output=tmp_path / "b.toy", registry=hostile_registry, jobs=1)
    assert [w.process.pid for w in pool.idle] == first and len(first) == 1  # the warm worker served both
    convhub.shutdown()
    assert _gone(first)


def test_library_context_manager_ends_the_workers(hostile_registry, toy, tmp_path):
    import convhub
    from convhub import workers

    with convhub.pool(jobs=1):
        convhub.convert(toy, to="toy-copy", output=tmp_path / "a.toy", registry=hostile_registry)
        pids = [w.process.pid for w in workers.shared_pool().idle]
    assert pids and _gone(pids)


@pytest.mark.parametrize("kwargs, needle", [
    ({"seed": -1}, "the seed must be"),
    ({"atol": float("nan")}, "atol must be a finite"),
    ({"rtol": -0.5}, "rtol must be a finite"),
    ({"jobs": 0}, "jobs must be"),
], ids=["seed", "atol-nan", "rtol-negative", "jobs"])
def test_library_bad_arguments_are_usage_errors(hostile_registry, toy, tmp_path, kwargs, needle):
    import convhub

    with pytest.raises(convhub.UsageError, match=needle):
        convhub.convert(toy, to="toy-copy", output=tmp_path / "o.toy", registry=hostile_registry, **kwargs)
    assert not (tmp_path / "o.toy").exists()


def test_library_output_is_the_input(hostile_registry, toy):
    import convhub

    before = digest(toy)
    with pytest.raises(convhub.UsageError, match="is the input"):
        convhub.convert(toy, to="toy-copy", output=toy, registry=hostile_registry, force=True)
    assert digest(toy) == before


# --- Plugins that misbehave at load ----------------------------------------------------------


def test_a_misspelled_hook_is_reported_with_a_suggestion(capsys):
    import convhub
    from convhub.plugins import build_registry

    class Misspelled:
        @convhub.hookimpl
        def convhub_format(self):
            return []

    registry = build_registry([("misspelled", Misspelled())])
    assert registry.problems == [
        "plugin 'misspelled' is skipped: it implements no hook named 'convhub_format' (did you mean 'convhub_formats'?)"]
    assert "misspelled" not in registry.plugins
    assert capsys.readouterr().err.count("convhub: warning:") == 1


def test_a_plugin_cannot_take_a_builtin_format_name():
    import convhub
    from convhub.plugins import build_registry
    from convhub.types import Conversion, Format

    class Shadow:
        @convhub.hookimpl
        def convhub_formats(self):
            return [Format("savedmodel", "not really a SavedModel"), Format("shadow-extra", "x")]

        @convhub.hookimpl
        def convhub_conversions(self):
            return [Conversion("keras", "savedmodel", convert=lambda a, d, o: None, cost=0.01, name="evil")]

    registry = build_registry([("shadow", Shadow())])
    (problem,) = registry.problems
    assert problem == ("format 'savedmodel' of plugin 'shadow' (registered in code) is already provided by plugin"
                       " 'tensorflow' (distribution convhub-tensorflow 0.1.0); plugin 'shadow' is skipped")
    assert registry.formats["savedmodel"].plugin == "tensorflow" and "shadow-extra" not in registry.formats
    assert registry.graph.best("keras", "savedmodel").hops[0].plugin == "tensorflow"  # not shadowed
    assert "clashes" in registry.plugins["shadow"].broken


def test_strict_mode_turns_a_plugin_problem_into_an_error(monkeypatch):
    import convhub
    from convhub.errors import PluginError
    from convhub.plugins import build_registry

    class Misspelled:
        @convhub.hookimpl
        def convhub_runner(self):
            return []

    monkeypatch.setenv("CONVHUB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="did you mean 'convhub_runners'"):
        build_registry([("misspelled", Misspelled())])


def test_a_raising_refuse_marks_its_plugin_broken_and_plans_around_it(hostile_registry, capsys):
    assert hostile_registry.graph.best("toy", "toy-copy").formats == ["toy", "toy-copy"]
    info = hostile_registry.plugins["hostile"]
    assert info.broken == "toy->toy-badrefuse refuse() raised KeyError: 'this refuse() is broken'"
    assert info.to_json()["broken"] == info.broken
    assert capsys.readouterr().err.count("convhub: warning:") == 1  # warned once


def test_a_worker_that_comes_up_after_the_pool_is_shut_down_is_stopped(monkeypatch):
    """Ctrl-C while a worker is starting: kill_busy and shutdown do not see it yet, so the pool
    stops it when it comes up, rather than hand it a call that would keep convhub from exiting
    (a `convhub batch` interrupted then hung until its hop ended)."""
    import threading

    from convhub import workers

    pool = workers.Pool(jobs=1)
    started, carry_on = threading.Event(), threading.Event()
    real_init = workers.Worker.__init__
    made = []

    def slow_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)
        started.set()
        carry_on.wait(30)  # still "starting" while the pool is shut down

    monkeypatch.setattr(workers.Worker, "__init__", slow_init)
    outcome = []

    def acquire():
        try:
            outcome.append(pool._acquire({}))
        except workers.WorkerFailed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=acquire)
    thread.start()
    assert started.wait(60)
    pool.kill_busy()  # what Ctrl-C does first: the starting worker is not busy yet
    pool.shutdown()
    carry_on.set()
    thread.join(30)
    assert isinstance(outcome[0], workers.WorkerFailed) and "shut down" in str(outcome[0])
    assert _gone([made[0].process.pid])
