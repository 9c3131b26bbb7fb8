"""TFLite in every mode, checked by LiteRT with tolerances that fit each precision."""

import json

import numpy as np
import pytest

import convhub
from convhub import cli, pipeline
from convhub.errors import UsageError
from conftest import build_cnn


@pytest.fixture(scope="module")
def cnn():
    return build_cnn()


@pytest.mark.parametrize("mode, precision", [
    (None, "float32"), ("float16", "float16"), ("dynamic", "dynamic-range"), ("int8", "int8"),
])
def test_each_mode_passes_with_its_own_tolerance(tmp_path, cnn, mode, precision):
    options = {"quantize": mode} if mode else {}
    result = convhub.convert(cnn, to="tflite", output=tmp_path / "m.tflite", options=options)
    final = result.parity[-1]
    assert result.artifacts[-1].facts["precision"] == precision
    assert final.checked and final.passed and final.runner == "litert"
    assert final.tolerance == pipeline.parity.TOLERANCES[precision]
    if mode:  # quantized: really different from float, and smaller
        assert final.max_abs_diff > 1e-6
    if mode == "int8":
        assert "generated: 64 samples from the input spec" in result.artifacts[-1].facts["representative_dataset"]


def test_int8_io_and_user_calibration_data(tmp_path, cnn):
    data = tmp_path / "calibration.npz"
    np.savez(data, image=np.random.default_rng(9).uniform(-1, 1, size=(32, 12, 12, 2)).astype("float32"))
    result = convhub.convert(cnn, to="tflite", output=tmp_path / "m.tflite",
                             options={"quantize": "int8", "int8_io": True, "representative_data": str(data)})
    facts = result.artifacts[-1].facts
    assert facts["int8_io"] is True and facts["representative_dataset"] == f"32 samples from {data}"
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(tmp_path / "m.tflite")).get_signature_runner()
    assert runner.get_input_details()["image"]["dtype"] == np.int8
    assert result.parity[-1].passed and result.parity[-1].outputs[0].top1_agreement == 1.0


def test_quantized_models_are_not_judged_by_float32_tolerances(tmp_path, cnn):
    """A float16 model judged with float32 tolerances fails, naming the output and the hop."""
    result = pipeline.run(cnn, "tflite", tmp_path / "m.tflite", options={"quantize": "float16"}, atol=1e-6, rtol=1e-6)
    assert not result.ok and not (tmp_path / "m.tflite").exists()
    assert result.parity[0].passed  # the SavedModel hop is exact
    assert "tflite (the error appears in the savedmodel → tflite hop): output 'output_0'" in result.error


def test_select_tf_ops_only_when_asked_and_reported(tmp_path):
    import tensorflow as tf

    class Cumulative(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.math.cumprod(x, axis=1)}  # no TFLite builtin: needs the Flex delegate

    module = Cumulative()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    failed = pipeline.run(tmp_path / "sm", "tflite", tmp_path / "a.tflite")
    assert not failed.ok and "savedmodel → tflite (tflite) failed" in failed.error
    result = convhub.convert(tmp_path / "sm", to="tflite", output=tmp_path / "b.tflite", options={"select_tf_ops": True})
    assert result.artifacts[-1].facts["select_tf_ops"] == ["Cumprod"]
    assert result.parity[-1].passed
    plain = convhub.convert(build_cnn(), to="tflite", output=tmp_path / "c.tflite", options={"select_tf_ops": True})
    assert plain.artifacts[-1].facts["select_tf_ops"] == []


def test_bad_quantization_options_are_usage_errors(tmp_path, cnn, capsys):
    with pytest.raises(UsageError, match="need full integer quantization"):
        from convhub_tflite.tflite import check_options

        check_options({"int8_io": True})
    code = cli.main(["convert", "keras→tflite", "x.keras", "-o", str(tmp_path / "o"), "--quantize", "int4"])
    assert code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err


def test_several_targets_share_hops_and_keep_intermediates(tmp_path, cnn, capsys):
    path = tmp_path / "cnn.keras"
    cnn.save(path)
    keep = tmp_path / "inspect"
    code = cli.main(["convert", str(path), "--to", "tflite,savedmodel", "-o", str(tmp_path / "out"),
                     "--keep-intermediates", str(keep), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["ok"] and report["targets"] == ["tflite", "savedmodel"]
    assert [r["route"] for r in report["results"]] == [["keras", "savedmodel", "tflite"], ["keras", "savedmodel"]]
    assert captured.err.count("converting keras → savedmodel") == 1  # the shared SavedModel is written once
    assert (tmp_path / "out" / "cnn.tflite").is_file()
    assert (tmp_path / "out" / "cnn_savedmodel" / "saved_model.pb").is_file()
    assert keep.is_dir() and list(keep.iterdir()) == []  # the only intermediate is also a final output


def test_intermediates_are_kept_on_request(tmp_path, cnn):
    keep = tmp_path / "inspect"
    result = convhub.convert(cnn, to="tflite", output=tmp_path / "m.tflite", keep_intermediates=keep)
    (kept,) = keep.iterdir()
    assert kept.name == "1-savedmodel" and (kept / "saved_model.pb").exists()
    assert result.artifacts[0].path == kept
