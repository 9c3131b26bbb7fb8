"""`convhub matrix`: bad input exits 2 with one line, before any model is read."""

import os

import pytest

from convhub import cli


@pytest.mark.parametrize("argv, needle", [
    (["--to", "tflite,,onnx"], "malformed target list"),
    (["--modes", "int9"], "no target of this run has a mode 'int9'"),
])
def test_bad_targets_and_modes_exit_2(tmp_path, capsys, argv, needle):
    (tmp_path / "m.keras").write_bytes(b"PK not really")
    assert cli.main(["matrix", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_a_fifo_or_a_missing_model_exits_2_at_once(tmp_path, capsys):
    fifo = tmp_path / "pipe.keras"
    os.mkfifo(fifo)
    assert cli.main(["matrix", str(fifo)]) == 2
    assert "is a FIFO" in capsys.readouterr().err
    assert cli.main(["matrix", str(tmp_path / "missing.keras")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert cli.main(["matrix", str(tmp_path / "empty")]) == 2  # no such folder either
