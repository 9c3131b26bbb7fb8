"""TFLite in every mode, checked by LiteRT with tolerances that fit each precision."""

import json
import re

import numpy as np
import pytest

import convhub
from convhub import cli, pipeline
from convhub.errors import InputError, ParityError, UsageError
from convhub.plugins import default_registry
from convhub.types import Artifact, TensorSpec
from convhub_tflite import tflite
from conftest import build_cnn, outlier_channel_model


@pytest.fixture(scope="module")
def cnn():
    return build_cnn()


def neighbours_alike(io):
    """How alike horizontally neighbouring pixels are in the images a check ran on (--save-io)."""
    with np.load(io) as data:
        image = data["image"]
    return np.corrcoef(image[:, :, :-1].ravel(), image[:, :, 1:].ravel())[0, 1]


@pytest.mark.parametrize("mode, precision", [
    (None, "float32"), ("float16", "float16"), ("dynamic", "dynamic-range"), ("int8", "int8"),
    ("int16x8", "int16x8"),
])
def test_each_mode_passes_with_its_own_tolerance(tmp_path, cnn, mode, precision):
    options = {"quantize": mode} if mode else {}
    result = convhub.convert(cnn, to="tflite", output=tmp_path / "m.tflite", options=options,
                             save_io=tmp_path / "io.npz")
    final = result.parity[-1]
    # A quantized route is checked on realistic rows (smooth pictures), a float one on uniform noise.
    assert result.inputs == ("realistic" if mode else "random")
    assert (neighbours_alike(tmp_path / "io.npz") > 0.5) if mode else (abs(neighbours_alike(tmp_path / "io.npz")) < 0.3)
    assert result.artifacts[-1].facts["precision"] == precision
    assert final.checked and final.passed and final.runner == "litert"
    assert final.tolerance == pipeline.parity.TOLERANCES[precision]
    assert final.cause == ""  # a drift's explanation is only sought for a drift
    if mode:  # quantized: really different from float, and smaller
        assert final.max_abs_diff > 1e-6
    if mode:  # the report names the generator of each input
        from convhub import report

        assert "seeded realistic inputs (seed 0: image: smooth random pictures in [-1, 1])" in report.render([result])
    if mode in ("int8", "int16x8"):
        assert "generated: 128 random samples from the input spec (image: smooth random pictures in [-1, 1]" in result.artifacts[-1].facts["representative_dataset"]
    # Read back from disk (what `convhub check` does), the file tells the same precision.
    assert tflite.precision_of((tmp_path / "m.tflite").read_bytes()) == precision


def test_a_drift_names_the_layer_whose_calibrated_range_clips(tmp_path, cnn):
    """int8 calibrated on generated pictures in [-1, 1], checked on the user's pictures 20 times
    brighter: the convolution's calibrated range cannot hold what they give, and the failed
    check says so, from a float32 conversion of the same SavedModel compared tensor by tensor,
    before the hop's advice."""
    bright = np.random.default_rng(3).uniform(-20, 20, size=(32, 12, 12, 2)).astype("float32")
    np.savez(tmp_path / "bright.npz", image=bright)
    with pytest.raises(ParityError) as failed:
        convhub.convert(cnn, to="tflite", output=tmp_path / "m.tflite", options={"quantize": "int8"},
                        inputs=tmp_path / "bright.npz")
    result = failed.value.result
    final = result.parity[-1]
    assert not result.ok and final.drifted
    assert final.cause.startswith("layer by layer against a float32 conversion on 8 rows"), final.cause
    clip = re.search(r"(\w+) \(CONV_2D\) clips (\d+\.\d)% of its values to the calibrated range \[(\S+), (\S+)\]"
                     r" \(they span \[(\S+), (\S+)\]", final.cause)
    assert clip and clip.group(1).startswith("conv2d"), final.cause
    low, high, span_low, span_high = map(float, clip.groups()[2:])
    assert float(clip.group(2)) > 5 and (span_high > 2 * high or span_low < 2 * low)
    assert f"; {final.cause} (int8 was calibrated on generated inputs" in result.error
    assert json.loads(json.dumps(result.to_json()))["parity"][-1]["cause"] == final.cause
    from convhub import report

    assert "Where it comes from: layer by layer against a float32 conversion" in report.render([result])
    assert not (tmp_path / "m.tflite").exists()


def test_a_drift_names_the_one_layer_that_adds_it_and_int16x8_passes(tmp_path):
    """Calibrated on data of the very distribution it is checked on, so nothing clips: the layer
    with the outlier channel takes the error from nothing to about all of it (a median over its
    channels sees what an error against its RMS, which the outlier dominates, would hide), and
    int16 activations, which the failure names, pass."""
    model = outlier_channel_model()
    np.savez(tmp_path / "cal.npz", features=np.random.default_rng(5).normal(size=(64, 16)).astype("float32"))
    options = {"quantize": "int8", "representative_data": str(tmp_path / "cal.npz")}
    with pytest.raises(ParityError) as failed:
        convhub.convert(model, to="tflite", output=tmp_path / "m.tflite", options=options)
    cause = failed.value.result.parity[-1].cause
    step = re.search(r"most of the error comes from one op: (\w+) \(FULLY_CONNECTED\) takes it from ([\d.]+)% to"
                     r" ([\d.]+)%", cause)
    assert step and step.group(1).startswith("wide"), cause
    assert float(step.group(2)) < 5 and float(step.group(3)) > 50 and "clips" not in cause
    assert "use --quantize int16x8" in failed.value.result.error
    passed = convhub.convert(model, to="tflite", output=tmp_path / "m16.tflite",
                             options={**options, "quantize": "int16x8"})
    assert passed.ok and passed.parity[-1].cause == ""


def test_int16x8_gives_a_sum_a_range_its_sums_fit(tmp_path):
    """TFLiteConverter's 16x8 mode gives a SUM the int16 range of its input, so a SavedModel that
    averages by summing, as JAX writes jnp.mean, drifts as the converter writes it (measured here
    on the converter's own file: the layer-by-layer comparison finds the SUM clipping); convhub
    gives the SUM's output n times its input's range, says so, and the check passes."""
    import tensorflow as tf
    from convhub_tflite import drift, int16x8

    class Pooled(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 16], tf.float32, name="x")])
        def serve(self, x):
            return {"pooled": tf.reduce_sum(tf.nn.relu(x) + 0.5, axis=[1, 2]) * tf.linspace(1.0, 4.0, 16) / 64}

    module = Pooled()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.serve)
    result = convhub.convert(tmp_path / "sm", to="tflite", output=tmp_path / "m.tflite", options={"quantize": "int16x8"})
    assert int16x8.SUM_NOTE in result.artifacts[-1].facts["fallback"]
    (output,) = result.parity[-1].outputs
    assert output.rel_rms < 0.01, output

    # The converter's own file (tflite.convert, before the hop mends it) clips at the SUM: 64
    # values reach ~10x its input's range.
    saved = Artifact("savedmodel", tmp_path / "sm", facts={"inputs": [TensorSpec("x", (None, 8, 8, 16), "float32")]})
    raw = tflite.convert(tf, saved, ["serving_default"], {"quantize": "int16x8"}, {})
    rng = np.random.default_rng(0)
    mended, notes = int16x8.mend(raw)
    assert notes == [int16x8.SUM_NOTE] and mended != raw
    (tmp_path / "raw.tflite").write_bytes(raw)
    feeds = {"x": rng.uniform(-1, 1, (8, 8, 8, 16)).astype(np.float32)}  # within the generated calibration's range
    cause = drift.explain(Artifact("savedmodel", tmp_path / "sm"),
                          Artifact("tflite", tmp_path / "raw.tflite", facts={"signature": "serving_default"}), {}, feeds)
    assert re.search(r"Sum \(SUM\) clips [\d.]+% of its values to the calibrated range", cause), cause


def test_int8_gives_scores_their_range_back_from_a_softmax_written_as_jax_writes_it(tmp_path, monkeypatch):
    """jax.nn.softmax lowers to REDUCE_MAX, MAXIMUM with -inf, SUB, EXP: TFLiteConverter's int8 gives
    the scores the range of their row maxima (REDUCE_MAX shares its input's scale), so every
    negative score is clipped to about 0 in the converter's own file; convhub gives the scores
    back the range its calibration measured, says so, and the check passes."""
    import tensorflow as tf
    from convhub_tflite import int8

    kernel = np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)

    class Softmax(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        def serve(self, x):
            scores = tf.matmul(x, kernel)
            top = tf.maximum(tf.reduce_max(scores, axis=-1, keepdims=True), np.float32(-3.4e38))
            e = tf.exp(scores - top)
            return {"probs": e / tf.reduce_sum(e, axis=-1, keepdims=True)}

    module = Softmax()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.serve)
    result = convhub.convert(tmp_path / "sm", to="tflite", output=tmp_path / "m.tflite", options={"quantize": "int8"})
    assert "get back their calibrated range" in result.artifacts[-1].facts["fallback"]
    (output,) = result.parity[-1].outputs
    assert output.rel_rms < 0.05 and output.top1_agreement > 0.95, output

    # The converter's own file, before the hop mends it: the scores' int8 range starts at about 0
    # (their row maxima's), though calibration saw them reach well below.
    saved = Artifact("savedmodel", tmp_path / "sm", facts={"inputs": [TensorSpec("x", (None, 8), "float32")]})
    raw = tflite.convert(tf, saved, ["serving_default"], {"quantize": "int8"}, {})
    (tmp_path / "raw.tflite").write_bytes(raw)
    x = np.random.default_rng(0).uniform(-1, 1, (64, 8)).astype(np.float32)  # the generated calibration's range
    exact = module.serve(x=tf.constant(x))["probs"].numpy()
    raw_err, mended_err = (
        float(np.sqrt(np.mean((tflite.Session(Artifact("tflite", path)).run({"x": x})["probs"] - exact) ** 2)
                      / np.mean(exact ** 2)))
        for path in (tmp_path / "raw.tflite", tmp_path / "m.tflite"))
    assert raw_err > 0.1 and mended_err < raw_err / 3, (raw_err, mended_err)  # measured: 13.7 % and 3.2 %
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0).subgraphs[0]
    kinds = tflite.operator_kinds(schema.Model.GetRootAsModel(raw, 0))
    (reduce_max,) = [op for op in graph.operators if kinds[op.opcodeIndex] == "REDUCE_MAX"]
    given = graph.tensors[reduce_max.inputs[0]].quantization
    assert (-128 - given.zeroPoint[0]) * given.scale[0] > -0.1 and (x @ kernel).min() < -1
    assert int8.narrowing(raw) and int8.mend(raw, raw)[1] == []  # no calibrated range known: left as it is

    # When the calibrate-only run or the mend fails, the converter's file stands as it wrote it,
    # and the hop says so (run here, in this process, so the failure can be made to happen).
    def broken(*_):
        raise RuntimeError("calibration broke")

    monkeypatch.setattr(int8, "mend", broken)
    facts = tflite.from_saved_model(saved, tmp_path / "unmended.tflite", {"quantize": "int8", "int8_ranges": "minmax"})
    assert "left as the converter wrote them (reading its calibrated ranges failed: calibration broke)" in facts["fallback"]
    assert (tmp_path / "unmended.tflite").read_bytes() == raw


def test_int8_io_and_user_calibration_data(tmp_path, cnn):
    data = tmp_path / "calibration.npz"
    np.savez(data, image=np.random.default_rng(9).uniform(-1, 1, size=(32, 12, 12, 2)).astype("float32"))
    result = convhub.convert(cnn, to="tflite", output=tmp_path / "m.tflite", save_io=tmp_path / "io.npz",
                             options={"quantize": "int8", "int8_io": True, "representative_data": str(data)})
    facts = result.artifacts[-1].facts
    # Calibrated on the user's data, so checked on rows in the [-1, 1) it spans, not on smooth pictures.
    assert abs(neighbours_alike(tmp_path / "io.npz")) < 0.3
    assert facts["int8_io"] is True and facts["representative_dataset"] == f"32 samples from {data}"
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(tmp_path / "m.tflite")).get_signature_runner()
    assert runner.get_input_details()["image"]["dtype"] == np.int8
    (output,) = result.parity[-1].outputs
    # Judged over the 128 rows a quantizing route checks on, not the 3 of a float one.
    assert result.parity[-1].passed and output.rows == 128 and output.top1_agreement >= 0.9


def test_int16x8_keeps_ops_without_a_16x8_kernel_float_and_says_so(tmp_path):
    """TFLite has no 16x8 HARD_SWISH (MobileNetV3's activation): the conversion keeps it float
    rather than failing, and the artifact's facts and the terminal's notes name it."""
    import keras

    keras.utils.set_random_seed(3)
    image = keras.Input(shape=(12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="hard_swish")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(image, keras.layers.Dense(4, name="scores")(x))
    result = convhub.convert(model, to="tflite", output=tmp_path / "m.tflite", options={"quantize": "int16x8"})
    facts = result.artifacts[-1].facts
    assert facts["precision"] == "int16x8" and facts["float_ops"] == ["HARD_SWISH"]
    assert "ops with no int16x8 kernel run in float32 between (de)quantize ops: HARD_SWISH" in facts["fallback"]
    assert result.parity[-1].passed
    assert tflite.float_ops((tmp_path / "m.tflite").read_bytes()) == ["HARD_SWISH"]
    # Without a float op, nothing is said.
    plain = convhub.convert(build_cnn(), to="tflite", output=tmp_path / "p.tflite", options={"quantize": "int16x8"})
    assert "float_ops" not in plain.artifacts[-1].facts and tflite.float_ops((tmp_path / "p.tflite").read_bytes()) == []


def test_int16x8_limits_of_the_converter_and_runtime_are_named(tmp_path):
    """An upstream limit of TFLite's 16x8 mode, one line that says what to use instead: the
    converter records no range for integer inputs, or for a recurrent layer's loop tensors."""
    import keras

    keras.utils.set_random_seed(4)
    ids = keras.Input(shape=(6,), dtype="int32", name="ids")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 8)(ids))
    tokens = keras.Model(ids, keras.layers.Dense(3)(x))
    failed = pipeline.run(tokens, "tflite", tmp_path / "t.tflite", options={"quantize": "int16x8"})
    assert not failed.ok and not (tmp_path / "t.tflite").exists()
    assert "int16x8 calibration recorded no range for tensor serving_default_ids:0" in failed.error
    assert "tensorflow/tensorflow#60799" in failed.error and "use --quantize int8, dynamic or float16" in failed.error
    # So a drifted int8 model of token ids is not sent there.
    int8 = convhub.convert(tokens, to="tflite", output=tmp_path / "i.tflite", options={"quantize": "int8"})
    assert "int16x8" not in int8.artifacts[-1].facts["if_drifted"]

    # A recurrent layer: refused after the Select TF ops fallback, in the same words.
    series = keras.Input(shape=(5, 3), name="series")
    recurrent = keras.Model(series, keras.layers.Dense(2)(keras.layers.LSTM(4)(series)))
    failed = pipeline.run(recurrent, "tflite", tmp_path / "r.tflite", options={"quantize": "int16x8"})
    assert not failed.ok and "int16x8 calibration recorded no range for tensor" in failed.error
    assert "RuntimeError" not in failed.error



def test_int16x8_runs_layer_norm_the_runtime_has_no_int16_kernel_for(tmp_path):
    """TFLiteConverter writes LayerNorm's SQUARED_DIFFERENCE with int16 tensors, which LiteRT
    cannot run ("SquaredDifference only supports FLOAT32 and INT32"): convhub moves that op to
    float32 between a dequantize and a quantize, as the converter does for HARD_SWISH, and says
    so; the file runs and passes its check."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(4)
    features = keras.Input(shape=(8,), name="features")
    normed = keras.Model(features, keras.layers.Dense(3)(keras.layers.LayerNormalization()(features)))
    result = convhub.convert(normed, to="tflite", output=tmp_path / "n.tflite", options={"quantize": "int16x8"})
    facts = result.artifacts[-1].facts
    assert facts["precision"] == "int16x8" and "SQUARED_DIFFERENCE" in facts["float_ops"]  # NEG: the converter's
    assert re.search(r"run in float32 between \(de\)quantize ops: [A-Z, ]*SQUARED_DIFFERENCE", facts["fallback"])
    (output,) = result.parity[-1].outputs
    assert result.ok and output.rel_rms < 0.1
    runner = Interpreter(model_path=str(tmp_path / "n.tflite")).get_signature_runner()
    assert runner(features=np.ones((1, 8), np.float32) * np.arange(8, dtype=np.float32))


def test_a_drifted_int8_check_names_int16x8(tmp_path, cnn):
    """What a drifted int8 check says to try (its hop's if_drifted): data like yours when the
    calibration was generated, int16 activations, then the float modes; int16x8 does not name itself."""
    from convhub_tflite.tflite import _if_drifted

    assert _if_drifted("int8", generated=True) == (
        "int8 was calibrated on generated inputs, not on data like yours: pass samples of your inputs with"
        " --representative-data, or use --quantize int16x8 (int16 activations), or use --quantize dynamic or float16")
    assert "int16x8 (int16" in _if_drifted("int8", generated=False)
    assert "int16x8 (int16" not in _if_drifted("int16x8", generated=True)
    assert "int16x8" not in _if_drifted("int8", generated=True, int16x8=False)  # token ids: refused there
    failed = pipeline.run(cnn, "tflite", tmp_path / "m.tflite", options={"quantize": "int8"}, atol=1e-9, rtol=0)
    assert not failed.ok and "or use --quantize int16x8 (int16 activations)" in failed.error


def test_quantized_models_are_not_judged_by_float32_tolerances(tmp_path, cnn):
    """A float16 model judged with float32 tolerances fails, naming the output and the hop."""
    result = pipeline.run(cnn, "tflite", tmp_path / "m.tflite", options={"quantize": "float16"}, atol=1e-6, rtol=1e-6)
    assert not result.ok and not (tmp_path / "m.tflite").exists()
    assert result.parity[0].passed  # the SavedModel hop is exact
    assert "tflite (the error appears in the savedmodel → tflite hop): output 'scores'" in result.error


def test_select_tf_ops_forbidden_fails_and_asked_for_is_reported(tmp_path):
    import tensorflow as tf

    class Cumulative(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.math.cumprod(x, axis=1)}  # no TFLite builtin: needs the Flex delegate

    module = Cumulative()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    failed = pipeline.run(tmp_path / "sm", "tflite", tmp_path / "a.tflite", options={"select_tf_ops": False})
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
    with pytest.raises(UsageError, match="need full integer quantization"):
        check_options({"quantize": "int16x8", "int8_io": True})  # its inputs would be int16
    with pytest.raises(UsageError, match="only used by full integer quantization"):
        check_options({"quantize": "dynamic", "representative_data": "x.npz"})
    # Options that cannot go together: exit 2 from the plan, before TensorFlow loads.
    path = tmp_path / "cnn.keras"
    cnn.save(path)
    for extra, needle in ((["--quantize", "int16x8", "--int8-io"], "need full integer quantization"),
                          (["--quantize", "dynamic", "--representative-data", str(path)], "only used by full integer")):
        code = cli.main(["convert", str(path), "--to", "tflite", "-o", str(tmp_path / "o.tflite"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and "loading TensorFlow" not in err and "converting" not in err
    code = cli.main(["convert", "keras→tflite", "x.keras", "-o", str(tmp_path / "o"), "--quantize", "int4"])
    assert code == 2 and "--quantize (quantize): choose one of float16, dynamic, int8, int16x8, not 'int4'" in capsys.readouterr().err


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


def saved_module(path, module, **signatures):
    import tensorflow as tf

    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def test_a_float_model_with_uint8_inputs_reads_back_as_float32(tmp_path):
    """uint8 pixels cast to float are data, not quantization: the precision is read from scales."""
    import tensorflow as tf

    class Pixels(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal((6, 3), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.uint8, name="pixels")])
        def serve(self, pixels):
            return {"scores": tf.matmul(tf.cast(pixels, tf.float32) / 255.0, self.w)}

    module = Pixels()
    sm = saved_module(tmp_path / "sm", module, serving_default=module.serve)
    result = convhub.convert(sm, to="tflite", output=tmp_path / "pixels.tflite")
    assert result.parity[-1].passed
    session = tflite.Session(result.artifacts[-1])
    assert session.inputs[0].dtype == "uint8"  # the file really has a uint8 input tensor
    source = pipeline.read_source(default_registry(), tmp_path / "pixels.tflite")
    assert source.facts["precision"] == "float32"


def test_calibration_data_fits_a_model_with_a_fixed_batch_of_one(tmp_path):
    """The .npz's first axis counts samples; a model taking (1, 8) is calibrated one sample at a time."""
    import tensorflow as tf

    class FixedBatch(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal((8, 4), seed=(3, 4)))

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, self.w))}

    module = FixedBatch()
    sm = saved_module(tmp_path / "sm", module, serving_default=module.serve)
    data = tmp_path / "calibration.npz"
    np.savez(data, x=np.random.default_rng(2).uniform(-1, 1, size=(16, 8)).astype("float32"))
    result = convhub.convert(sm, to="tflite", output=tmp_path / "m.tflite",
                             options={"quantize": "int8", "representative_data": str(data)})
    assert result.artifacts[-1].facts["representative_dataset"] == f"16 samples from {data}"
    assert result.parity[-1].passed
    assert pipeline.read_source(default_registry(), tmp_path / "m.tflite").facts["precision"] == "int8"
    # The samples' own shape is still checked.
    np.savez(data, x=np.zeros((16, 5), "float32"))
    with pytest.raises(InputError, match=r"input 'x' has shape \(16, 5\), the model takes \(None, 8\)"):
        tflite.representative_samples({"representative_data": str(data)}, [TensorSpec("x", (1, 8), "float32")])


def test_a_signature_asked_for_by_name_must_exist(tmp_path):
    import tensorflow as tf

    class TwoSignatures(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def double(self, x):
            return {"y": 2 * x}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def negate(self, x):
            return {"y": -x}

    module = TwoSignatures()
    sm = saved_module(tmp_path / "sm", module, serving_default=module.double, negate=module.negate)
    convhub.convert(sm, to="tflite", output=tmp_path / "m.tflite")
    registry = default_registry()
    with pytest.raises(InputError, match=r"has no signature 'halve' \(available: negate, serving_default\)"):
        pipeline.read_source(registry, tmp_path / "m.tflite", options={"signature": "halve"})
    asked = pipeline.read_source(registry, tmp_path / "m.tflite", options={"signature": "negate"})
    assert asked.facts["signature"] == "negate"
    assert tflite.Session(asked).run({"x": np.ones((1, 3), "float32")})["y"].tolist() == [[-1, -1, -1]]
    # A signature fact inherited from an earlier hop is not a request: the file's first runs
    # (TFLite orders signatures by name).
    inherited = tflite.Session(Artifact("tflite", tmp_path / "m.tflite", facts={"signature": "predict"}))
    assert inherited.signature == "negate"


def test_generated_calibration_never_holds_a_row_the_check_runs_on():
    """The check's rows (seed 0, or --seed N) and the generated calibration samples come from
    different seeds: a row of both would be a check on the model's own calibration."""
    from convhub import parity

    specs = [TensorSpec("features", (None, 20), "float32")]
    samples, said = tflite.representative_samples({}, specs)
    for seed in (0, 1, 63):
        check = parity.make_inputs(specs, seed, parity.QUANTIZED_BATCH, realistic=True)["features"]
        assert not any(np.array_equal(row, s["features"][0]) for row in check for s in samples)
    assert len(samples) == tflite.REPRESENTATIVE_SAMPLES and "seeds 4294967296+" in said


def test_generated_calibration_takes_a_dynamic_length_from_the_checks_inputs(tmp_path):
    """A sum over a dynamic sequence length grows with it: calibrated on the default 8 steps and
    checked on 32, int8 clips the pooled sums; calibrated at the --inputs' length, it passes."""
    import tensorflow as tf

    class PooledSum(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal((4, 3), seed=(5, 6)))

        @tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.float32, name="steps")])
        def serve(self, steps):
            return {"y": tf.matmul(tf.reduce_sum(tf.nn.relu(steps), axis=1), self.w)}

    module = PooledSum()
    sm = saved_module(tmp_path / "sm", module, serving_default=module.serve)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, steps=np.random.default_rng(3).standard_normal((128, 32, 4)).astype("float32"))
    result = convhub.convert(sm, to="tflite", output=tmp_path / "m.tflite", options={"quantize": "int8"},
                             inputs=inputs)
    said = result.artifacts[-1].facts["representative_dataset"]
    assert "generated: 128 random samples" in said and "dynamic sizes as in --inputs: steps 32x4" in said
    assert result.parity[-1].passed, result.parity[-1].cause
    # Without the check's inputs the samples keep the default size, which those inputs' sums outgrow.
    spec = [TensorSpec("steps", (None, None, 4), "float32")]
    samples, said = tflite.representative_samples({}, spec)
    assert samples[0]["steps"].shape == (1, 8, 4) and "dynamic sizes" not in said
    samples, _ = tflite.representative_samples({"check_inputs": str(inputs)}, spec)
    assert samples[0]["steps"].shape == (1, 32, 4)
    # Inputs keyed by names this model does not use leave the default size, not an error.
    np.savez(tmp_path / "other.npz", tokens=np.zeros((2, 32, 4), "float32"), more=np.zeros((2, 1), "float32"))
    samples, said = tflite.representative_samples({"check_inputs": str(tmp_path / "other.npz")}, spec)
    assert samples[0]["steps"].shape == (1, 8, 4) and "dynamic sizes" not in said
    # Calibrated at the default 8 steps (the same generator, handed over as data), it drifts:
    # the evidence that the length is what mattered.
    short = tmp_path / "short.npz"
    np.savez(short, steps=np.random.default_rng(4).standard_normal((64, 8, 4)).astype("float32"))
    with pytest.raises(ParityError) as drifted:
        convhub.convert(sm, to="tflite", options={"quantize": "int8", "representative_data": str(short)}, inputs=inputs)
    assert "clips" in drifted.value.result.parity[-1].cause


def test_int8_narrows_a_heavy_tailed_activation_range_to_its_least_error_and_keeps_the_outputs(tmp_path):
    """The cube of a projection is heavy-tailed: min/max lets its few largest values set every
    step. convhub's default narrows such a range to the least squared error on the calibration
    samples (ranges.py) and says so; the model's output keeps its range; --option
    int8_ranges=minmax keeps the converter's own. (Whether that lowers a model's error depends on
    what reads the tensor: on the zoo it did on average, docs/parity.md.)"""
    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema
    from convhub_tflite import ranges

    w = (0.35 * tf.random.stateless_normal((8, 1024), seed=(7, 8))).numpy()
    v = (tf.random.stateless_normal((1024, 4), seed=(9, 10)) / 32).numpy()

    class HeavyTail(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        def serve(self, x):
            z = tf.matmul(x, w)
            return {"y": tf.matmul(tf.sigmoid(z * z * z), v)}

    module = HeavyTail()
    sm = saved_module(tmp_path / "sm", module, serving_default=module.serve)
    chosen = convhub.convert(sm, to="tflite", output=tmp_path / "mse.tflite", options={"quantize": "int8"})
    own = convhub.convert(sm, to="tflite", output=tmp_path / "minmax.tflite",
                          options={"quantize": "int8", "int8_ranges": "minmax"})
    said = chosen.artifacts[-1].facts["int8_ranges"]
    assert re.search(r"least squared error on the calibration samples: [1-9]\d* activation ranges narrowed", said)
    assert "int8_ranges" not in own.artifacts[-1].facts
    assert chosen.parity[-1].passed and own.parity[-1].passed
    # Were it to drift, the advice names the converter's own ranges too (narrower ones help on average).
    assert chosen.artifacts[-1].facts["if_drifted"].endswith(", or keep the converter's own activation ranges"
                                                              " with --int8-ranges minmax")
    assert "--int8-ranges" not in own.artifacts[-1].facts["if_drifted"]

    def scales(path):
        """{op kind: the int8 scale of what it writes, or for DEQUANTIZE (the model output's) reads}."""
        raw = path.read_bytes()
        graph = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0).subgraphs[0]
        kinds = tflite.operator_kinds(schema.Model.GetRootAsModel(raw, 0))
        return {kinds[op.opcodeIndex]: graph.tensors[
                    op.inputs[0] if kinds[op.opcodeIndex] == "DEQUANTIZE" else op.outputs[0]].quantization.scale[0]
                for op in graph.operators if kinds[op.opcodeIndex] in ("MUL", "DEQUANTIZE")}  # the last MUL: the cube

    narrow, whole = scales(tmp_path / "mse.tflite"), scales(tmp_path / "minmax.tflite")
    assert narrow["MUL"] < 0.95 * whole["MUL"], (narrow, whole)  # the heavy tail: a finer step
    assert narrow["DEQUANTIZE"] == whole["DEQUANTIZE"]  # the model output keeps the converter's range
    # Values spread evenly over their range lose nothing to a narrower one: the whole range stays.
    even = np.linspace(-1.0, 3.0, 10_001)
    assert ranges.least_error_share(even, -1.0, 3.0) == 1.0
    cubes = np.random.default_rng(0).normal(size=65_536) ** 3
    assert 0.8 < ranges.least_error_share(cubes, float(cubes.min()), float(cubes.max())) < 0.95
    with pytest.raises(UsageError, match="int8_ranges chooses int8 activation ranges: it needs --quantize int8"):
        tflite.check_options({"quantize": "float16", "int8_ranges": "mse"})


def test_int8_ranges_stay_the_converters_when_the_calibrated_model_cannot_be_run():
    """ranges.chosen_for wraps the converter's quantizer only while open; a calibrated model it
    cannot run keeps its min/max ranges and the record says why."""
    from tensorflow.lite.python import lite
    from convhub_tflite import ranges

    original = lite._mlir_quantize
    with ranges.chosen_for([{"x": np.zeros((1, 2), np.float32)}]) as record:
        assert lite._mlir_quantize is not original
        with pytest.raises(Exception):
            lite._mlir_quantize(b"not a flatbuffer")
    assert lite._mlir_quantize is original
    assert record["narrowed"] == 0 and record["calibrated"] == b"not a flatbuffer" and record["kept"]
