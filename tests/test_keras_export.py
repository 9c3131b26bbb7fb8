"""keras → savedmodel for real: grouped convolutions that every converter takes, and the Keras
output layers' names kept in every target.

Keras 3 runs a grouped convolution (Conv2D(groups > 1), ConvNeXt's depthwise 7x7) through XLA,
a call that tf2onnx and tensorflowjs cannot take; the export computes it as a depthwise (or
per-group) convolution instead, and leaves the caller's model as it was.
"""

import json

import numpy as np

import convhub
from convhub.types import Artifact


def convnext_block(seed=0):
    """A tiny ConvNeXt-like block: 7x7 depthwise Conv2D(groups=channels), LayerNorm, an inverted
    MLP, a residual; then a grouped (not depthwise) convolution and a head."""
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    image = keras.Input((12, 12, 8), name="image")
    x = L.Conv2D(8, 7, padding="same", groups=8, name="block_dwconv")(image)
    x = L.LayerNormalization(epsilon=1e-6)(x)
    x = L.Dense(32, activation="gelu")(x)
    x = L.Add()([image, L.Dense(8)(x)])
    x = L.Conv2D(12, 3, strides=2, groups=4, activation="relu", name="grouped")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(image, L.Dense(5, name="logits")(x), name="convnext_block")


def xla_functions(saved_model_dir):
    """The functions of the serving signature's graph that TensorFlow must compile with XLA."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    library = fn.graph.as_graph_def().library.function
    return [f.signature.name for f in library if f.attr["_XlaMustCompile"].b]


def test_a_convnext_block_converts_to_onnx_tfjs_and_tflite_with_parity(tmp_path):
    from convhub_tensorflow import keras_model

    model = convnext_block()
    path = tmp_path / "block.keras"
    model.save(path)

    # What the edge will do, as `convhub route --explain` shows it before anything runs.
    facts = keras_model.facts_of(model)
    assert facts["grouped_convolutions"] == ["block_dwconv", "grouped"]
    assert facts["grouped_convolution_plan"] == {"depthwise": ["block_dwconv"], "per_group": ["grouped"], "kept": []}
    edge = next(c for c in convhub.registry().conversions if c.name == "keras->savedmodel")
    notes = edge.notes(facts)
    assert notes[0].startswith("1 grouped convolution (groups = channels) exported as depthwise convolutions: ")
    assert notes[1].startswith("1 grouped convolution (1 < groups < channels) exported as one convolution per group")

    results = convhub.convert(path, to=["onnx", "tfjs", "tflite"], output=tmp_path / "out")
    for result in results:
        assert result.ok, result.error
        assert all(p.checked and p.passed and p.max_abs_diff < 1e-4 for p in result.parity), result.parity
        assert [o.name for o in result.parity[-1].outputs] == ["logits"]
    saved = results[0].artifacts[0]
    assert saved.format == "savedmodel"
    assert saved.facts["rewritten_layers"] == {"depthwise": ["block_dwconv"], "per_group": ["grouped"]}
    assert saved.facts["outputs"] == ["logits"]

    import onnx

    graph = onnx.load(str(results[0].output)).graph
    groups = sorted(a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group")
    assert groups == [1, 1, 1, 1, 8]  # the depthwise one, and the grouped one as four plain ones
    assert [o.name for o in graph.output] == ["logits"]
    model_json = json.loads((results[1].output / "model.json").read_text())
    assert list(model_json["signature"]["outputs"]) == ["logits"]


def test_the_callers_model_is_left_as_it_was(tmp_path):
    """The rewrite lives on the layer instances only while exporting; every kind of grouped
    convolution computes what Keras computes (a depthwise multiplier of 2, strides, dilation,
    Conv1D with causal padding), and the SavedModel holds no XLA call."""
    import keras

    from convhub_tensorflow import keras_model

    keras.utils.set_random_seed(1)
    L = keras.layers
    image = keras.Input((10, 10, 6), name="image")
    a = L.Conv2D(12, 5, padding="same", groups=6, dilation_rate=2, name="dw_times_two")(image)
    a = L.Conv2D(12, 3, strides=2, groups=3, name="three_groups")(a)
    inner = keras.Model(image, L.GlobalAveragePooling2D()(a), name="inner")  # a nested model
    series = keras.Input((9, 4), name="series")
    b = L.Conv1D(8, 3, padding="causal", groups=4, name="causal_dw")(series)
    b = L.Flatten()(L.Conv1D(4, 2, groups=2, name="conv1d_pairs")(b))
    model = keras.Model([image, series], [L.Dense(3, name="zeta")(inner(image)), L.Dense(2, name="alpha")(b)])

    rng = np.random.default_rng(0)
    feeds = {"image": rng.normal(size=(4, 10, 10, 6)).astype("float32"),
             "series": rng.normal(size=(4, 9, 4)).astype("float32")}
    before = [t.numpy() for t in model([feeds["image"], feeds["series"]])]
    grouped = ["dw_times_two", "three_groups", "causal_dw", "conv1d_pairs"]
    layers = {layer.name: layer for layer, _ in keras_model.grouped_convolutions(model)}
    assert sorted(layers) == sorted(grouped)

    with keras_model._grouped_convolutions_rewritten(model) as rewritten:
        assert {kind: sorted(names) for kind, names in rewritten.items()} == {
            "depthwise": ["causal_dw", "dw_times_two"], "per_group": ["conv1d_pairs", "three_groups"]}
        during = [t.numpy() for t in model([feeds["image"], feeds["series"]])]
    for want, got in zip(before, during):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)

    facts = keras_model.export_saved_model(Artifact("keras", model=model), tmp_path / "sm", {})
    assert facts["outputs"] == ["zeta", "alpha"]  # the model's order, not the signature map's
    assert all(not {"convolution_op", "call"} & set(vars(layer)) for layer in layers.values())
    after = [t.numpy() for t in model([feeds["image"], feeds["series"]])]
    for want, got in zip(before, after):
        np.testing.assert_array_equal(got, want)

    assert xla_functions(tmp_path / "sm") == []
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    out = served(**{k: tf.constant(v) for k, v in feeds.items()})
    assert sorted(out) == ["alpha", "zeta"]
    np.testing.assert_allclose(out["zeta"].numpy(), before[0], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out["alpha"].numpy(), before[1], atol=1e-5, rtol=1e-5)


def test_named_outputs_keep_the_input_signature_of_keras_own_export(tmp_path):
    """Exported with its output names, a model takes the inputs keras.Model.export gives it:
    the same names, dtypes and dynamic dims, for list, dict and Sequential inputs."""
    import keras
    import tensorflow as tf

    from convhub_tensorflow import keras_model

    L = keras.layers
    beta, alpha = keras.Input((3,), name="beta"), keras.Input((None, 2), name="alpha", dtype="float16")
    joined = L.Concatenate()([beta, L.GlobalAveragePooling1D()(L.Dense(3)(alpha))])
    as_list = keras.Model([beta, alpha], [L.Dense(2, name="score")(joined), L.Dense(1, name="probs")(joined)])
    as_dict = keras.Model({"beta": beta, "alpha": alpha}, L.Dense(2, name="probs")(joined))
    sequential = keras.Sequential([keras.Input((4,), name="features"), L.Dense(3, name="predictions")])
    for model, names in [(as_list, ["score", "probs"]), (as_dict, ["probs"]), (sequential, ["predictions"])]:
        assert keras_model.named_outputs(model) == names
        ours, keras_own = tmp_path / f"{model.name}-ours", tmp_path / f"{model.name}-keras"
        assert keras_model.export_saved_model(Artifact("keras", model=model), ours, {})["outputs"] == names
        model.export(str(keras_own), verbose=False)
        signature = [tf.saved_model.load(str(p)).signatures["serving_default"] for p in (ours, keras_own)]
        assert signature[0].structured_input_signature == signature[1].structured_input_signature
        assert sorted(signature[0].structured_outputs) == sorted(names)

    # Made-up names (dense_3), duplicates and dicts keep keras.Model.export's names.
    x = keras.Input((3,), name="x")
    default_names = keras.Model(x, [L.Dense(2)(x), L.Dense(2, name="named")(x)])
    dict_outputs = keras.Model(x, {"b": L.Dense(1, name="first")(x), "a": L.Dense(1, name="second")(x)})
    assert keras_model.named_outputs(default_names) is None and keras_model.named_outputs(dict_outputs) is None
    assert keras_model.named_outputs(keras.Model(x, keras.ops.add(x, 1.0))) is None


def test_an_output_layer_named_predictions_keeps_its_name_in_tflite_and_onnx(tmp_path):
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((6,), name="features"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3, activation="softmax", name="predictions"),
    ])
    results = convhub.convert(model, to=["tflite", "onnx"], output=tmp_path)
    for result in results:
        assert result.ok, result.error
        assert all(p.passed for p in result.parity)
        assert all([o.name for o in p.outputs] == ["predictions"] for p in result.parity)
        assert all(o.candidate_name == "predictions" for p in result.parity for o in p.outputs)

    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    tflite, onnx_file = (r.output for r in results)
    runner = Interpreter(model_path=str(tflite)).get_signature_runner()
    assert list(runner.get_input_details()) == ["features"] and list(runner.get_output_details()) == ["predictions"]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["predictions"]
    x = np.random.default_rng(3).normal(size=(5, 6)).astype("float32")
    want = model(x).numpy()
    np.testing.assert_allclose(runner(features=x)["predictions"], want, atol=1e-5)
    np.testing.assert_allclose(session.run(["predictions"], {"features": x})[0], want, atol=1e-5)


def test_facts_of_nested_recurrent_layers_and_kept_grouped_convolutions():
    import keras

    from convhub_tensorflow import keras_model

    L = keras.layers
    tokens = keras.Input((7, 4), name="tokens")
    encoder = keras.Sequential([keras.Input((7, 4)), L.Bidirectional(L.LSTM(3, return_sequences=True)), L.GRU(2)],
                               name="encoder")
    volume = keras.Input((4, 4, 4, 2), name="volume")
    v = L.GlobalAveragePooling3D()(L.Conv3D(4, 3, padding="same", groups=2, name="conv3d_grouped")(volume))
    model = keras.Model([tokens, volume], L.Dense(1, name="score")(L.Concatenate()([encoder(tokens), v])))
    facts = keras_model.facts_of(model)
    assert facts["recurrent_layers"] == ["Bidirectional", "GRU", "LSTM"]
    assert facts["grouped_convolutions"] == ["conv3d_grouped"]
    assert facts["grouped_convolution_plan"] == {"depthwise": [], "per_group": [], "kept": ["conv3d_grouped"]}
    (note,) = keras_model.export_notes(facts)
    assert note.startswith("1 grouped convolution kept as Keras runs it, through XLA (conv3d_grouped): ")
    plain = keras_model.facts_of(keras.Sequential([keras.Input((3,)), L.Dense(2)]))
    assert plain["grouped_convolutions"] == [] and plain["recurrent_layers"] == []
    assert "grouped_convolution_plan" not in plain and keras_model.export_notes(plain) == []


def test_generated_ids_stay_inside_an_embeddings_vocabulary(tmp_path):
    """An Embedding of 5 rows: the default generated integers (0-9) would be ids it cannot look
    up; the Keras source says the input's range, and the parity inputs keep to it."""
    import keras

    keras.utils.set_random_seed(3)
    ids = keras.Input((6,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(5, 4)(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(ids, keras.layers.Dense(3, name="logits")(x))
    path = tmp_path / "tiny_vocab.keras"
    model.save(path)
    result = convhub.convert(path, to="tflite", output=tmp_path / "m.tflite")
    assert result.facts["input_ranges"] == {"token_ids": [0, 5]}
    final = result.parity[-1]
    assert result.ok and final.passed and final.max_abs_diff < 1e-5
    # And the rows differ: ids spread over the vocabulary give outputs that depend on them.
    assert not result.weak_evidence


def test_pixels_a_model_rescales_itself_are_generated_in_their_range_for_checks_and_int8(tmp_path):
    """A model that starts with Rescaling(1/127.5, offset=-1) takes pixels in [0, 255]: parity
    inputs and generated int8 calibration use that range, not [-1, 1) (a sliver of it), and a
    drifted int8 artifact calibrated on generated data says what to do instead."""
    import keras

    from convhub import parity
    from convhub_tensorflow import keras_model

    L = keras.layers
    keras.utils.set_random_seed(4)
    image = keras.Input((8, 8, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1.0)(image)
    x = L.Conv2D(4, 3, activation="relu")(x)
    model = keras.Model(image, L.Dense(3, name="logits")(L.GlobalAveragePooling2D()(x)))
    assert keras_model.input_ranges(model) == {"image": [0.0, 255.0]}
    normalized = keras.Sequential([keras.Input((4,)), L.Normalization(mean=[1.0] * 4, variance=[4.0] * 4), L.Dense(2)])
    assert list(keras_model.input_ranges(normalized).values()) == [[-3.0, 5.0]]
    # Inputs handed whole to a nested model (a keras-hub task model's backbone, dict inputs) are followed into it.
    ids, mask = keras.Input((6,), dtype="int32", name="ids"), keras.Input((6,), dtype="int32", name="mask")
    inner_ids = keras.Input((6,), dtype="int32", name="token_ids")
    inner_mask = keras.Input((6,), dtype="int32", name="padding_mask")
    pooled = L.GlobalAveragePooling1D()(L.Embedding(7, 4)(inner_ids), mask=inner_mask)
    backbone = keras.Model({"token_ids": inner_ids, "padding_mask": inner_mask}, pooled)
    task = keras.Model([ids, mask], L.Dense(2)(backbone({"token_ids": ids, "padding_mask": mask})))
    assert keras_model.input_ranges(task) == {"ids": [0, 7]}
    path = tmp_path / "pixels.keras"
    model.save(path)
    result = convhub.convert(path, to="tflite", output=tmp_path / "m.tflite", quantize="int8")
    assert result.facts["input_ranges"] == {"image": [0.0, 255.0]}
    calibration = result.artifacts[-1].facts["representative_dataset"]
    assert calibration.startswith("generated:") and "image: smooth random pictures in [0, 255]" in calibration
    assert result.artifacts[-1].facts["if_drifted"].startswith("int8 was calibrated on generated inputs")
    feeds = parity.make_inputs(result.facts["inputs"], 0, 32, ranges=result.facts["input_ranges"])
    assert feeds["image"].min() >= 0 and feeds["image"].max() > 200
    # Exported with model.export(), the same model read as a SavedModel says the same range: its
    # graph multiplies and shifts the input by constants inside the function the signature calls.
    from convhub import pipeline
    from convhub.plugins import default_registry

    model.export(str(tmp_path / "exported"), format="tf_saved_model", verbose=False)
    exported = pipeline.read_source(default_registry(), tmp_path / "exported")
    assert exported.format == "savedmodel" and exported.facts["input_ranges"] == {"image": [0.0, 255.0]}
    # A SavedModel that does anything else with its input first says nothing about its range.
    plain = keras.Sequential([keras.Input((4,), name="x"), L.Dense(2)])
    plain.export(str(tmp_path / "plain"), format="tf_saved_model", verbose=False)
    assert "input_ranges" not in pipeline.read_source(default_registry(), tmp_path / "plain").facts
