"""Keras / SavedModel / TFLite → ONNX for real: tf2onnx converts, onnx.checker and onnxruntime validate.

Every check of a written .onnx also runs it in a fresh onnxruntime session, independently of
convhub's runner, at a batch size the parity check did not use.
"""

from pathlib import Path

import numpy as np
import pytest

import convhub
from convhub import pipeline
from convhub.errors import ConversionError, ConvhubError, UsageError
from convhub.plugins import default_registry
from convhub.types import Artifact, TensorSpec
from conftest import build_cnn


def edge(name):
    return next(c for c in default_registry().conversions if c.name == name)


def ort_run(path: Path, feeds: dict) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def io_of(path: Path):
    """Names and dims ('batch' for a symbolic dim) of the graph's inputs and outputs, and its opset."""
    import onnx

    model = onnx.load(str(path))

    def spec(values):
        return [(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return spec(model.graph.input), spec(model.graph.output), opset


def assert_parity_passed(result, formats):
    assert [p.format for p in result.parity] == formats
    assert all(p.checked and p.passed and p.max_abs_diff < 1e-4 for p in result.parity), result.parity


def test_keras_cnn_to_onnx_keeps_names_and_a_dynamic_batch(tmp_path):
    model = build_cnn()
    out = tmp_path / "cnn.onnx"
    result = convhub.convert(model, to="onnx", output=out)
    assert result.route.formats == ["keras", "savedmodel", "onnx"]
    assert_parity_passed(result, ["savedmodel", "onnx"])
    assert io_of(out) == ([("image", ["batch", 12, 12, 2])], [("scores", ["batch", 4])], 17)

    # Independently of convhub, at a batch size the check did not use: the batch stayed dynamic.
    x = np.random.default_rng(7).uniform(-2, 2, size=(5, 12, 12, 2)).astype("float32")
    got = ort_run(out, {"image": x})["scores"]
    assert got.shape == (5, 4)
    assert np.abs(got - model(x).numpy()).max() < 1e-4


def test_two_named_inputs_and_two_outputs_keep_their_names(tmp_path):
    import keras

    keras.utils.set_random_seed(4)
    left, right = keras.Input((5,), name="left"), keras.Input((3,), name="right")
    hidden = keras.layers.Concatenate()([keras.layers.Dense(6, activation="gelu")(left), right])
    model = keras.Model(
        [left, right], [keras.layers.Dense(2)(hidden), keras.layers.Dense(3, activation="tanh")(hidden)]
    )
    out = tmp_path / "two.onnx"
    result = convhub.convert(model, to="onnx", output=out)
    assert_parity_passed(result, ["savedmodel", "onnx"])
    assert [o.name for o in result.parity[-1].outputs] == ["output_0", "output_1"]  # matched by name
    inputs, outputs, _ = io_of(out)
    assert inputs == [("left", ["batch", 5]), ("right", ["batch", 3])]
    assert outputs == [("output_0", ["batch", 2]), ("output_1", ["batch", 3])]

    rng = np.random.default_rng(8)
    feeds = {"left": rng.normal(size=(7, 5)).astype("float32"), "right": rng.normal(size=(7, 3)).astype("float32")}
    got = ort_run(out, feeds)
    want = model([feeds["left"], feeds["right"]])
    for name, expected in zip(["output_0", "output_1"], want):
        assert np.abs(got[name] - expected.numpy()).max() < 1e-4


def test_savedmodel_directory_with_an_opset_option_and_reading_the_onnx_back(tmp_path):
    model = build_cnn(seed=2)
    saved = tmp_path / "saved"
    model.export(str(saved), verbose=False)
    out = tmp_path / "cnn15.onnx"
    result = convhub.convert(saved, to="onnx", output=out, options={"opset": 15})
    assert result.route.formats == ["savedmodel", "onnx"]
    assert_parity_passed(result, ["onnx"])
    assert io_of(out)[2] == 15

    # The written file is an ONNX source in its own right, found by content even without its suffix.
    bare = tmp_path / "model-without-suffix"
    bare.write_bytes(out.read_bytes())
    source = pipeline.read_source(default_registry(), bare)
    assert source.format == "onnx"
    assert source.facts["inputs"] == [TensorSpec("image", (None, 12, 12, 2), "float32")]
    assert source.facts["outputs"] == ["output_0"] and source.facts["opset"] == 15
    assert source.facts["precision"] == "float32"  # what `convhub check` judges it by


def test_tflite_to_onnx_keeps_the_signature_names_and_the_precision_fact(tmp_path):
    model = build_cnn(seed=3)
    tflite = convhub.convert(model, to="tflite", output=tmp_path / "cnn.tflite").output
    out = tmp_path / "from_tflite.onnx"
    result = convhub.convert(tflite, to="onnx", output=out)
    assert result.route.formats == ["tflite", "onnx"]
    assert_parity_passed(result, ["onnx"])  # against the LiteRT interpreter running the .tflite
    # Not 'serving_default_image:0' / 'StatefulPartitionedCall_1:0', the names tf2onnx gives them.
    assert io_of(out) == ([("image", ["batch", 12, 12, 2])], [("scores", ["batch", 4])], 17)
    x = np.random.default_rng(9).uniform(-2, 2, size=(4, 12, 12, 2)).astype("float32")
    assert np.abs(ort_run(out, {"image": x})["scores"] - model(x).numpy()).max() < 1e-4

    # The facts the edge reports: the incoming precision survives, the opset is the one asked for.
    facts = {"precision": "float16", "signature": "serving_default"}
    written = edge("tflite->onnx").convert(Artifact("tflite", tflite, facts=facts), tmp_path / "f.onnx", {"opset": 16})
    assert written == {"precision": "float16", "opset": 16} and io_of(tmp_path / "f.onnx")[2] == 16


def test_eleven_outputs_keep_the_signature_order_not_tf2onnx_string_order(tmp_path):
    import keras

    keras.utils.set_random_seed(5)
    x = keras.Input((3,), name="x")
    model = keras.Model(x, [keras.layers.Dense(1)(x) for _ in range(11)])
    out = tmp_path / "heads.onnx"
    result = convhub.convert(model, to="onnx", output=out)
    assert_parity_passed(result, ["savedmodel", "onnx"])
    names = [f"output_{i}" for i in range(11)]
    assert result.artifacts[0].facts["outputs"] == names  # reported by keras → savedmodel
    assert [name for name, _ in io_of(out)[1]] == names  # not output_0, output_1, output_10, output_2...


def test_the_precision_fact_of_an_onnx_file_read_from_disk(tmp_path):
    """`convhub check` reads artifacts from disk: their precision picks the tolerance it applies."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from convhub_onnx.onnx_model import precision_of

    registry = default_registry()
    saved = tmp_path / "sm"
    build_cnn(seed=6).export(str(saved), verbose=False)
    for mode, precision in [("dynamic", "dynamic-range"), ("int8", "int8"), ("float16", "float16")]:
        tflite = convhub.convert(saved, to="tflite", output=tmp_path / f"{mode}.tflite", options={"quantize": mode}).output
        onnx_file = convhub.convert(tflite, to="onnx", output=tmp_path / f"{mode}.onnx").output
        assert pipeline.read_source(registry, onnx_file).facts["precision"] == precision, mode
    # onnxruntime's dynamic quantization (DynamicQuantizeLinear, MatMulInteger) of a float model.
    float_onnx = convhub.convert(saved, to="onnx", output=tmp_path / "float.onnx").output
    assert pipeline.read_source(registry, float_onnx).facts["precision"] == "float32"
    quantize_dynamic(str(float_onnx), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8)
    assert pipeline.read_source(registry, tmp_path / "q.onnx").facts["precision"] == "dynamic-range"

    # float16 initializers, and float32 weights with few distinct values (ones), which prove nothing.
    def matmul_model(weights):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])
        init = numpy_helper.from_array(weights, "w")
        nodes = [helper.make_node("Cast", ["w"], ["w32"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["x", "w32"], ["y"])]
        return helper.make_model(helper.make_graph(nodes, "m", [x], [y], [init]))

    weights = np.random.default_rng(0).normal(size=(32, 32))
    assert precision_of(matmul_model(weights.astype("float16"))) == "float16"
    assert precision_of(matmul_model(weights.astype("float32"))) == "float32"
    assert precision_of(matmul_model(np.ones((32, 32), "float32"))) == "float32"


@pytest.mark.parametrize("opset", [99, 13, 19, "seventeen", True, 17.0])
def test_a_bad_opset_is_a_usage_error_before_any_conversion(tmp_path, opset):
    dest = tmp_path / "model.onnx"
    with pytest.raises(UsageError, match="option 'opset'"):
        edge("savedmodel->onnx").convert(Artifact("savedmodel", tmp_path), dest, {"opset": opset})
    with pytest.raises(UsageError, match="option 'opset'"):
        edge("tflite->onnx").convert(Artifact("tflite", tmp_path / "m.tflite"), dest, {"opset": opset})
    assert not dest.exists()


def test_a_bad_opset_through_the_library_fails_and_writes_nothing(tmp_path):
    out = tmp_path / "model.onnx"
    # Checked by the ONNX plugin's declaration of the option, before anything loads.
    with pytest.raises(UsageError, match=r"--opset \(opset\): must be from 14 to 18, not 99"):
        convhub.convert(build_cnn(), to="onnx", output=out, options={"opset": 99})
    assert list(tmp_path.iterdir()) == []


def test_an_op_tf2onnx_cannot_convert_fails_the_conversion_and_writes_nothing(tmp_path):
    """The notes' case: tf2onnx leaves an op it has no handler for (Igamma: ONNX has none)
    in the graph, logs it, and returns a model anyway."""
    import tensorflow as tf

    class Guarded(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.math.igamma(x * x + 1.0, tf.ones_like(x)) + 1.0}

    module = Guarded()
    saved = tmp_path / "guarded"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    out = tmp_path / "guarded.onnx"
    with pytest.raises(ConversionError) as info:
        convhub.convert(saved, to="onnx", output=out)
    assert str(info.value) == (
        "savedmodel → onnx (onnx) failed: InvalidONNXError: the graph still holds ops that are not ONNX"
        " (tf2onnx could not convert them): Igamma. Instead: tflite with --select-tf-ops runs TensorFlow ops,"
        " or rewrite those ops in the model"
    )
    assert not out.exists()


def test_a_select_whose_other_branch_is_nan_stays_a_where(tmp_path):
    """tf2onnx writes Select as cond·x + (1−cond)·y unless it sees a NaN constant among the
    inputs; a NaN that is broadcast first (jnp.take's out-of-bounds fill, in every Flax Embed)
    then turned every value into NaN. convhub keeps Select a Where."""
    import tensorflow as tf

    class Guarded(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            fill = tf.broadcast_to(tf.constant(float("nan")), tf.shape(x))
            return {"y": tf.where(x > -10.0, x * 2.0, fill)}

    module = Guarded()
    saved = tmp_path / "guarded"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    out = tmp_path / "guarded.onnx"
    result = convhub.convert(saved, to="onnx", output=out)
    assert result.ok
    y = ort_run(out, {"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)})["y"]
    assert np.isfinite(y).all()
    import onnx

    assert "Where" in {n.op_type for n in onnx.load(out).graph.node}


def test_the_validation_rejects_graphs_onnxruntime_cannot_run():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from convhub_onnx.validate import InvalidONNXError, check

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("NoSuchOp", ["a"], ["b"]),
        helper.make_node("StatefulPartitionedCall", ["b"], ["c"], domain="ai.onnx.converters.tensorflow"),
        helper.make_node("NoSuchOp", ["c"], ["y"]),
    ]
    broken = helper.make_model(helper.make_graph(nodes, "broken", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(Exception):  # genuinely broken: onnxruntime itself refuses it
        ort.InferenceSession(broken.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(InvalidONNXError) as info:
        check(broken)
    assert ": NoSuchOp (x2), ai.onnx.converters.tensorflow:StatefulPartitionedCall. Instead: " in str(info.value)

    # Only standard ops, but adding a float to an int64: caught by onnx.checker's strict shape inference.
    n = helper.make_tensor_value_info("n", TensorProto.INT64, ["batch", 4])
    mistyped = helper.make_model(
        helper.make_graph([helper.make_node("Add", ["x", "n"], ["y"])], "mistyped", [x, n], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.raises(InvalidONNXError, match="^onnx.checker rejects the graph: .*Add"):
        check(mistyped)

    good = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "good", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    check(good)  # a valid graph passes
    onnx.checker.check_model(good)


def test_a_savedmodel_with_xla_call_module_is_routed_through_tflite():
    registry = default_registry()
    assert registry.graph.best("savedmodel", "onnx").formats == ["savedmodel", "onnx"]
    assert registry.graph.best("keras", "onnx", {}).formats == ["keras", "savedmodel", "onnx"]
    facts = {"xla_call_module": True}
    assert registry.graph.best("savedmodel", "onnx", facts).formats == ["savedmodel", "tflite", "onnx"]
    direct = edge("savedmodel->onnx")
    assert direct.refuse({}) is None and direct.refuse({"xla_call_module": False}) is None
    assert registry.graph.blocked(direct, facts) == (
        "refuses this model: it holds XlaCallModule ops (StableHLO from a native JAX export), which tf2onnx 1.17"
        " cannot convert (it fails with 'Could not infer the attribute type from the elements of the passed"
        " Iterable value'); the TFLite converter can, so go through tflite"
    )


def test_a_native_jax_export_is_converted_through_tflite_and_the_refusal_is_true(tmp_path):
    """A real SavedModel holding XlaCallModule: convhub plans around tf2onnx, which fails on it as the refusal says."""
    import jax.numpy as jnp
    import tensorflow as tf
    from jax.experimental import jax2tf

    weights = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")

    def mlp(x):
        return jnp.tanh(x @ weights)

    module = tf.Module()
    module.serve = tf.function(
        jax2tf.convert(mlp, native_serialization=True, polymorphic_shapes=["(b, 4)"]),
        autograph=False, input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")],
    )
    saved = tmp_path / "jax_saved"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})

    out = tmp_path / "jax.onnx"
    result = convhub.convert(saved, to="onnx", output=out)
    assert result.facts["xla_call_module"] is True
    assert result.route.formats == ["savedmodel", "tflite", "onnx"]
    assert_parity_passed(result, ["tflite", "onnx"])
    x = np.random.default_rng(2).uniform(-1, 1, size=(6, 4)).astype("float32")
    assert io_of(out)[0] == [("x", ["batch", 4])]
    assert np.abs(ort_run(out, {"x": x})["output_0"] - np.asarray(mlp(x))).max() < 1e-6

    artifact = Artifact("savedmodel", saved, facts={"signature": "serving_default"})
    with pytest.raises(ValueError, match="Could not infer the attribute type from the elements"):
        edge("savedmodel->onnx").convert(artifact, tmp_path / "direct.onnx", {})
    assert not (tmp_path / "direct.onnx").exists()
