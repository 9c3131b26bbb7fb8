"""The library as a notebook user meets it: convhub.convert's typed parameters, plugin options
checked by their declarations (never a raw TypeError), inputs as a dict of arrays, and a result
that sums itself up. Conversions run on the hostile plugin's toy formats (NumPy, milliseconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import convhub


@pytest.fixture(scope="module")
def toys(hostile_site):
    import sys

    sys.path.insert(0, str(hostile_site))
    import convhub_hostile
    from convhub.plugins import build_registry

    yield build_registry([("hostile", convhub_hostile)], entry_points=False)
    sys.path.remove(str(hostile_site))


@pytest.fixture
def toy(tmp_path) -> Path:
    path = tmp_path / "model.toy"
    path.write_text(json.dumps({"w": np.random.default_rng(0).normal(size=(4, 3)).round(4).tolist()}))
    return path


def test_declared_plugin_options_are_keyword_arguments(cnn_file, tmp_path):
    """`quantize="int8"` reaches planning as the TFLite plugin's option (refused here only because
    ONNX does not read it), before any framework loads."""
    with pytest.raises(convhub.UsageError, match="option 'quantize' is not used by any conversion on the route"):
        convhub.convert(cnn_file, to="onnx", output=tmp_path / "m.onnx", quantize="int8")
    with pytest.raises(convhub.UsageError, match="choose one of float16, dynamic, int8, int16x8, not 'int4'"):
        convhub.convert(cnn_file, to="tflite", output=tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(convhub.UsageError) as info:
        convhub.convert(cnn_file, to="tflite", output=tmp_path / "m.tflite", quantise="int8")
    assert "no parameter or plugin option 'quantise'" in str(info.value)
    assert "did you mean 'quantize'?" in info.value.hint and "opset" in info.value.hint and "seed" in info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_bad_targets_are_usage_errors(toy, toys):
    with pytest.raises(convhub.UsageError, match="did you mean 'toy-copy'"):
        convhub.convert(toy, to="toy-cpy", registry=toys)
    with pytest.raises(convhub.UsageError, match="a format name or a list of them"):
        convhub.convert(toy, to=5, registry=toys)  # type: ignore[call-overload]


def test_inputs_as_a_dict_of_arrays(toy, toys, tmp_path):
    x = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    result = convhub.convert(toy, to="toy-copy", output=tmp_path / "o.toy", inputs={"x": x}, registry=toys)
    assert result.ok and result.inputs == "arrays given in the call" and result.seed is None
    with pytest.raises(convhub.InputError, match="not numeric"):
        convhub.convert(toy, to="toy-copy", output=tmp_path / "p.toy", inputs={"x": np.array([["a"] * 4])},
                        registry=toys)
    with pytest.raises(convhub.UsageError, match="holds Python objects"):
        convhub.convert(toy, to="toy-copy", output=tmp_path / "q.toy", inputs={"x": [object()]}, registry=toys)
    assert not (tmp_path / "p.toy").exists() and not (tmp_path / "q.toy").exists()


def test_a_result_sums_itself_up(toy, toys, tmp_path):
    result = convhub.convert(toy, to="toy-copy", output=tmp_path / "o.toy", registry=toys)
    text = repr(result)
    assert text.startswith("<ConversionResult toy → toy-copy → ") and text.endswith(": ok, max abs diff 0>")
    summary = result.summary(width=80)
    assert "1/1 target ok in" in summary and "wrote " in summary
    assert max(len(line) for line in summary.splitlines()) <= 80
    assert "<table>" in result._repr_html_() and "1/1 target ok" in result._repr_html_()
    assert result.raise_for_status() is result


def test_several_targets_and_raise_for_status(toy, toys, tmp_path):
    with pytest.raises(convhub.ConversionError) as info:
        convhub.convert(toy, to=["toy-copy", "toy-raise"], output=tmp_path / "out", registry=toys)
    failed = info.value.result
    assert failed.target == "toy-raise" and "FAILED" in repr(failed) and len(repr(failed)) < 200
    results = convhub.pipeline.run_many(toy, ["toy-copy", "toy-drift"], {"toy-copy": None, "toy-drift": None},
                                        registry=toys)
    many = convhub.Results(results)
    assert repr(many) == "<Results 1/2 ok: toy-copy ok, toy-drift FAILED>" and not many.ok
    assert "FAILED: 1/2 targets ok" in many.summary()
    with pytest.raises(convhub.ParityError):
        many.raise_for_status()
