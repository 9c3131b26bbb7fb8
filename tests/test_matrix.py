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


def test_a_folder_of_model_folders_is_read_with_the_data_beside_each_model(tmp_path):
    from convhub.matrix import models_in
    from convhub.plugins import default_registry

    for name in ("cnn", "rnn"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.keras").write_bytes(b"PK")  # detected by its suffix; read later
        (tmp_path / name / f"{name}.calibration.npz").write_bytes(b"")
    (tmp_path / "flax").mkdir()
    (tmp_path / "flax" / "flax.py").write_text("model = None\n")
    found = {m.name: m for m in models_in([tmp_path], default_registry())}
    assert sorted(found) == ["cnn", "flax", "rnn"]
    assert found["cnn"].calibration == tmp_path / "cnn" / "cnn.calibration.npz" and found["cnn"].inputs is None
    assert found["flax"].source == f"{tmp_path / 'flax' / 'flax.py'}:model"


def test_update_replaces_only_the_cells_that_ran_again_each_in_its_place(tmp_path):
    import json

    from convhub import matrix

    old = [matrix.Cell(m, t, "float32", "pass" if m != "b" else "fail", cause="" if m != "b" else "broken")
           for m in ("a", "b", "c") for t in ("tflite", "onnx")]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(matrix.to_json(old, 60.0, commands=["first"], versions={"python": "3.11.7"})))
    previous, seconds, commands, versions = matrix.load(path)
    new = [matrix.Cell("b", t, "float32", "pass") for t in ("tflite", "onnx")]
    merged = matrix.merge(previous, new)
    assert [(c.model, c.target, c.status) for c in merged] == [
        ("a", "tflite", "pass"), ("a", "onnx", "pass"), ("b", "tflite", "pass"), ("b", "onnx", "pass"),
        ("c", "tflite", "pass"), ("c", "onnx", "pass")]
    # `--update --modes int8`: the model's int8 cell is replaced, its float32 cells are kept, and
    # a cell the matrix did not have goes after its model's.
    again = [matrix.Cell("b", "tflite", "int8", "pass"), matrix.Cell("a", "tflite", "int8", "fail", cause="x")]
    merged = matrix.merge([*merged, matrix.Cell("b", "tflite", "int8", "fail", cause="y")], again)
    assert [(c.model, c.target, c.mode, c.status) for c in merged] == [
        ("a", "tflite", "float32", "pass"), ("a", "onnx", "float32", "pass"), ("a", "tflite", "int8", "fail"),
        ("b", "tflite", "float32", "pass"), ("b", "onnx", "float32", "pass"), ("b", "tflite", "int8", "pass"),
        ("c", "tflite", "float32", "pass"), ("c", "onnx", "float32", "pass")]
    assert seconds == 60.0 and commands == ["first"]
    # The kept cells were made with another Python than the new ones: the page says both, once.
    assert matrix.versions_since(versions, {"python": "3.12.1", "keras-hub": "0.31.0"}) == {
        "python": "3.11.7 then 3.12.1", "keras-hub": "0.31.0"}
    assert matrix.versions_since({"python": "3.11.7 then 3.12.1"}, {"python": "3.12.1"}) == {
        "python": "3.11.7 then 3.12.1"}
    path.write_text(json.dumps(matrix.to_json(old, 6.0, interrupted=True)))
    with pytest.raises(Exception, match="interrupted run"):
        matrix.load(path)
