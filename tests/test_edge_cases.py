"""Edge cases of the core: options no hop reads, outputs of the wrong kind, non-finite values,
references to model objects, JSON on every failure. None of these needs a framework."""

import json
import math

import numpy as np
import pytest

from convhub import cli, pyref
from convhub.parity import Tolerance, compare_output
from convhub.plugins import default_registry
from conftest import run_cli


def one_line_json_error(proc, code, needle):
    assert proc.returncode == code, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["ok"] is False and payload["exit_code"] == code and needle in payload["error"]
    assert "Traceback" not in proc.stderr


def test_json_is_printed_even_when_the_command_line_is_wrong():
    one_line_json_error(run_cli("convert", "x.keras", "--to", "tflite", "--json"), 2, "required: -o/--output")


def test_an_option_no_hop_reads_is_refused_before_any_work(tmp_path):
    proc = run_cli("convert", "keras→onnx", "x.keras", "-o", tmp_path / "m.onnx", "--quantize", "int8", "--json")
    one_line_json_error(proc, 2, "option 'quantize' is not used by any conversion on the route keras → savedmodel → onnx")
    proc = run_cli("convert", "keras→tflite", "x.keras", "-o", tmp_path / "m.tflite", "--opset", "17", "--json")
    one_line_json_error(proc, 2, "option 'opset' is not used")


def test_an_output_of_the_other_kind_is_never_replaced(tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "keep.txt").write_text("data")
    proc = run_cli("convert", "keras→tflite", "x.keras", "-o", folder, "--force", "--json")
    one_line_json_error(proc, 2, "is a folder, but this output is a file")
    assert (folder / "keep.txt").read_text() == "data"
    a_file = tmp_path / "out"
    a_file.write_text("not a folder")
    proc = run_cli("convert", "x.keras", "--to", "tflite,onnx", "-o", a_file, "--json")
    one_line_json_error(proc, 2, "is a file, so")


def test_non_finite_values_must_match_exactly():
    tol = Tolerance(1e-4, 1e-4)
    ref = np.array([[1.0, np.nan, np.inf]])
    assert compare_output("y", ref, ref.copy(), tol).passed  # NaN and inf where the source has them
    for wrong in ([[1.0, 0.0, np.inf]], [[1.0, np.nan, -np.inf]], [[1.0, np.nan, 5.0]]):
        diff = compare_output("y", ref, np.array(wrong), tol)
        assert not diff.passed and "non-finite values (NaN/inf) differ" in diff.reason
    diff = compare_output("y", np.array([1.0, 2.0]), np.array([1.0, np.nan]), tol)
    assert not diff.passed


def test_json_output_never_holds_nan_or_infinity():
    from convhub.jsonout import dump_json

    text = dump_json({"a": math.inf, "b": [math.nan, 1.5], "c": compare_output("y", np.ones(2), np.ones(3), Tolerance(0, 0))})
    payload = json.loads(text)
    assert payload["a"] is None and payload["b"] == [None, 1.5] and payload["c"]["max_abs_diff"] is None
    assert "shape (3,)" in payload["c"]["reason"]


def test_a_reference_to_a_model_object_is_not_called(tmp_path):
    source = tmp_path / "refs.py"
    source.write_text(
        "class Model:\n    def __call__(self, *args, **kwargs):\n        raise AssertionError('called')\n"
        "MODEL = Model()\n"
        "def build():\n    return MODEL\n"
    )
    model = pyref.load(f"{source}:MODEL")
    assert type(model).__name__ == "Model"
    assert type(pyref.load(f"{source}:build")).__name__ == "Model"  # a function is called for its model


def test_routes_name_hops_that_are_not_the_plain_edge():
    graph = default_registry().graph
    names = {str(r) for r in graph.routes("jax", "savedmodel")}
    assert names == {"jax → savedmodel", "jax → savedmodel [jax->savedmodel-tf-ops]"}


def test_route_json_says_when_there_is_no_route(capsys):
    assert cli.main(["route", "tflite→keras", "--explain", "--json"]) == 2
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False and payload["routes"] == [] and "no usable route" in payload["error"]


def test_explain_lists_each_unusable_route_with_its_blocking_hop(capsys):
    assert cli.main(["route", "jax→tfjs", "--all", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["routes"][0]["hops"][0]["conversion"] == "jax->savedmodel-tf-ops"
    # The native export's route, blocked at its second hop (the modern JAX routes are blocked too here).
    (unusable,) = [u for u in payload["unusable"] if u["hops"][0] == "jax->savedmodel"]
    assert unusable["hops"] == ["jax->savedmodel", "savedmodel->tfjs"]
    assert "savedmodel → tfjs (tfjs) refuses this model" in unusable["reason"]


def test_generated_masks_are_padding_masks_with_a_valid_token_in_every_row():
    """A (batch, length) input named as a mask gets what a tokenizer writes (ones, then zeros,
    never an empty row, which attention turns into NaN); segment ids stay 0/1 at random."""
    from convhub import parity
    from convhub.types import TensorSpec

    specs = [TensorSpec("padding_mask", (None, 12), "int32"), TensorSpec("attention_mask", (None, 5), "bool"),
             TensorSpec("segment_ids", (None, 12), "int32")]
    feeds = parity.make_inputs(specs, 3, 64)
    for name in ("padding_mask", "attention_mask"):
        mask = feeds[name].astype(int)
        assert mask.dtype == int and mask[:, 0].all(), name  # at least one valid position per row
        assert (np.diff(mask, axis=1) <= 0).all(), name  # no hole: once padding, padding to the end
        assert 1 < len({int(n) for n in mask.sum(axis=1)}), name  # lengths vary
    assert feeds["padding_mask"].dtype == np.int32 and feeds["attention_mask"].dtype == np.bool_
    assert (np.diff(feeds["segment_ids"], axis=1) > 0).any()  # not a prefix pattern


def test_realistic_inputs_are_smooth_pictures_and_standardised_features():
    """What int8 is calibrated on without data, and quantized routes are checked on: pictures
    whose neighbouring pixels are alike (independent noise per pixel sets ranges for edges no
    photograph has), in the input's range, channels first or last; other floats of unknown
    range from N(0, 1); the same seed, the same rows."""
    from convhub import parity
    from convhub.types import TensorSpec

    specs = [TensorSpec("image", (None, 32, 32, 3), "float32"), TensorSpec("planar", (None, 3, 16, 24), "float32"),
             TensorSpec("pixels", (None, 32, 32, 3), "uint8"), TensorSpec("features", (None, 20), "float32"),
             TensorSpec("scaled", (None, 20), "float32"), TensorSpec("bytes", (None, 8, 8, 1), "uint8")]
    ranges = {"image": [0.0, 255.0], "pixels": [0, 256], "scaled": [0.0, 1.0]}
    feeds = parity.make_inputs(specs, 5, 32, ranges=ranges, realistic=True)
    plain = parity.make_inputs(specs, 5, 32, ranges=ranges)

    def neighbours(x, axis):  # correlation of each value with the next one along an axis
        a, b = np.moveaxis(x, axis, 0)[:-1].ravel(), np.moveaxis(x, axis, 0)[1:].ravel()
        return np.corrcoef(a.astype(float), b.astype(float))[0, 1]

    for name, axis in (("image", 1), ("image", 2), ("planar", 2), ("planar", 3), ("pixels", 2)):
        assert neighbours(feeds[name], axis) > 0.5 > abs(neighbours(plain[name], axis)), (name, axis)
    assert feeds["image"].min() >= 0 and feeds["image"].max() <= 255 and feeds["image"].std() > 20
    assert feeds["planar"].min() >= -1 and feeds["planar"].max() <= 1 and feeds["planar"].shape == (32, 3, 16, 24)
    assert feeds["pixels"].dtype == np.uint8 and feeds["pixels"].max() > 200
    assert feeds["bytes"].max() > 200 >= plain["bytes"].max()  # uint8 pictures are pixels in [0, 255]
    assert np.ptp(feeds["image"].mean(axis=(1, 2, 3))) > 30  # brightness differs from picture to picture
    assert 0.8 < feeds["features"].std() < 1.2 and np.abs(feeds["features"]).max() > 2
    assert 0 <= feeds["scaled"].min() and feeds["scaled"].max() < 1  # a known range is kept
    again = parity.make_inputs(specs, 5, 32, ranges=ranges, realistic=True)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
