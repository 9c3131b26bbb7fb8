"""Toolchains: a hop or a runner in another Python with other packages, created with uv on first
use from a lock, reused afterwards; calls cross as JSON records (convhub.wire), never pickles."""

import json
import sys
import time

import numpy as np
import pytest

from convhub import toolchains, wire, workers
from convhub.errors import CacheError, InputError
from convhub.types import Artifact, TensorSpec
from toolchain_probe import PROBE, crash, double, refuse_input, versions

pytestmark = pytest.mark.skipif(toolchains.unavailable(PROBE) is not None, reason="no Python 3.11 or no uv here")


@pytest.fixture(scope="module")
def pool():
    pool = workers.Pool(jobs=2)
    yield pool
    pool.shutdown()


def test_a_call_runs_in_the_toolchain_s_python_with_its_own_numpy(pool):
    assert toolchains.unmet(PROBE) == f"needs Python <3.12, this is {sys.version.split()[0]}"
    python, numpy_version = pool.call(versions, toolchain=PROBE)
    assert python.startswith("3.11.") and numpy_version == "2.2.6" != np.__version__
    assert pool.call(versions) == (sys.version.split()[0], np.__version__)  # no toolchain: this Python


def test_arrays_and_records_cross_and_come_back(pool):
    spec = TensorSpec("x", (None, 3), "float32")
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([1, 2], np.int64)}
    doubled, back = pool.call(double, (arrays, spec), toolchain=PROBE)
    assert back == spec and doubled["x"].dtype == np.float32
    np.testing.assert_array_equal(doubled["x"], arrays["x"] * 2)
    np.testing.assert_array_equal(doubled["i"], [2, 4])


def test_convhub_errors_keep_their_class_and_a_crash_is_one_line(pool):
    with pytest.raises(InputError, match="the probe refuses this input"):
        pool.call(refuse_input, toolchain=PROBE)
    with pytest.raises(workers.WorkerFailed, match="aborted"):
        pool.call(crash, toolchain=PROBE)
    assert pool.call(versions, toolchain=PROBE)[1] == "2.2.6"  # a new worker took its place


def test_the_environment_is_made_once_and_reused(pool):
    place = toolchains.installed(PROBE)
    marker = json.loads((place / toolchains.MARKER).read_text())
    assert marker["lock_hash"] == toolchains.lock_hash(PROBE) and marker["python"] == "3.11"
    assert place.name == f"probe-py3.11-{toolchains.lock_hash(PROBE)}"
    started = time.perf_counter()
    assert toolchains.ensure(PROBE) == toolchains.python_of(place)
    assert time.perf_counter() - started < 0.1  # found, not made again
    status = toolchains.status(PROBE, ["probe"])
    assert status.state == "installed" and status.size > 10_000_000 and status.python == "3.11"
    assert toolchains.check(PROBE) is None


def test_a_half_made_environment_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVHUB_TOOLCHAINS", str(tmp_path))
    place = toolchains.installed(PROBE)
    (place / "bin").mkdir(parents=True)  # as Ctrl-C halfway through an install leaves it
    assert toolchains.status(PROBE).state == "broken"
    notes = []
    python = toolchains.ensure(PROBE, notes.append)
    assert python.is_file() and (place / toolchains.MARKER).is_file()
    assert notes[0].startswith("installing toolchain probe (Python 3.11, first use")
    (tmp_path / "probe-py3.11-000000000000").mkdir()  # an old lock's environment
    removed = toolchains.prune([PROBE])
    assert [p.name for p, _ in removed] == ["probe-py3.11-000000000000"] and place.is_dir()


def test_what_cannot_cross_is_refused_in_one_line():
    with pytest.raises(wire.WireError, match="in-memory model cannot cross"):
        wire.encode(Artifact("jax", model=object()))
    with pytest.raises(wire.WireError, match="defined at module level"):
        wire.encode(lambda x: x)
    with pytest.raises(wire.WireError, match="array of Python objects"):
        wire.encode(np.array([object()]))
    value = {"t": (1, 2.5, None), "p": toolchains.root(), 3: "int key", "f": np.float32(1.5)}
    assert wire.loads(wire.dumps(value)) == {**value, "f": 1.5}


def test_with_no_toolchain_declared_the_listing_says_so(monkeypatch, capsys):
    from convhub import cli, plugins

    monkeypatch.setattr(plugins, "default_registry", lambda: plugins.build_registry(entry_points=False))
    assert cli.main(["toolchains"]) == 0
    assert capsys.readouterr().out.strip() == "no toolchains: no installed plugin declares one"
    assert cli.main(["toolchains", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["toolchains"] == []


def test_pruning_keeps_a_declared_lock_s_environment_for_another_python(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVHUB_TOOLCHAINS", str(tmp_path))
    other = tmp_path / f"probe-py3.10-{toolchains.lock_hash(PROBE)}"  # made by an installation on Python 3.10
    other.mkdir()
    (other / toolchains.MARKER).write_text("{}")
    half = tmp_path / f"probe-py3.9-{toolchains.lock_hash(PROBE)}"
    half.mkdir()  # no marker: half made
    assert [p.name for p, _ in toolchains.prune([PROBE])] == [half.name] and other.is_dir()


def test_a_cache_that_is_a_file_is_one_line_naming_the_variable(tmp_path, monkeypatch):
    """CONVHUB_CACHE naming a file: the toolchains, the TF.js runtime and the batch cache all live
    under it, and each says so in one line instead of an internal FileExistsError."""
    from convhub import cache

    taken = tmp_path / "a-file"
    taken.write_text("")
    monkeypatch.setenv("CONVHUB_CACHE", str(taken))
    monkeypatch.delenv("CONVHUB_TOOLCHAINS", raising=False)
    monkeypatch.delenv("CONVHUB_CACHE_DIR", raising=False)
    assert toolchains.root() == taken / "toolchains" and cache.default_root() == taken / "batch"
    with pytest.raises(toolchains.ToolchainError, match=r"cannot use .*a-file/toolchains for convhub's cache: Not a dir"
                                                        r".*point CONVHUB_CACHE"):
        toolchains.ensure(PROBE)
    with pytest.raises(CacheError, match=r"cannot use .*a-file/batch/entries for convhub's cache.*CONVHUB_CACHE_DIR") as bad:
        cache.Cache(None).put("ab" * 32, {}, "report", None)
    assert bad.value.exit_code == 2  # the setup is at fault, not a model: not a failed toolchain
