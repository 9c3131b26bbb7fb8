"""SavedModel → TF.js graph model for real: tensorflowjs converts, @tensorflow/tfjs in Node.js runs it.

The first run installs the npm packages of the runner into the per-user cache (`npm ci`, ~10 s).
"""

import base64
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convhub
from convhub import parity, pipeline
from convhub.errors import NoRouteError, UsageError
from convhub.plugins import default_registry
from convhub.types import Artifact, TensorSpec
from convhub_tfjs import converter, graph_model, node
from convhub_tfjs.quantize import SMALLEST
from conftest import build_cnn, outlier_channel_model


def weight_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in graph_model.shard_files(model_dir))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tfjs") / "cnn_savedmodel"
    build_cnn().export(str(path), format="tf_saved_model", verbose=False)
    return path


@pytest.fixture(scope="module")
def float32_tfjs(saved_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfjs") / "cnn_tfjs"
    return convhub.convert(saved_model, to="tfjs", output=out)


def test_keras_model_to_tfjs_with_parity_in_node(tmp_path):
    model = build_cnn(seed=3)
    out = tmp_path / "web_model"
    result = convhub.convert(model, to="tfjs", output=out)
    assert result.ok and result.output == out
    assert result.route.formats == ["keras", "savedmodel", "tfjs"]
    assert [p.format for p in result.parity] == ["savedmodel", "tfjs"]
    assert all(p.checked and p.passed and p.max_abs_diff < 1e-4 for p in result.parity)
    assert result.facts["inputs"][0] == TensorSpec("image", (None, 12, 12, 2), "float32")
    model_json = json.loads((out / "model.json").read_text())
    assert model_json["format"] == "graph-model"
    assert list(model_json["signature"]["inputs"]) == ["image"]
    assert list(model_json["signature"]["outputs"]) == ["scores"]
    # Keras' exact GELU is Erfc in TF, which TF.js lacks; the plugin rewrote it with Erf.
    assert "Erfc" not in graph_model.ops_of(model_json) and "Erf" in graph_model.ops_of(model_json)

    # The written directory is detected and read as a TF.js model.
    registry = default_registry()
    assert pipeline.detect_format(registry, out).name == "tfjs"
    assert pipeline.read_source(registry, out).facts["dynamic_dims"] == ["image[0]"]

    # The Node runner on its own, at another batch size, against the Keras model itself.
    session = node.Session(Artifact("tfjs", path=out))
    try:
        assert session.inputs == [TensorSpec("image", (None, 12, 12, 2), "float32")]
        assert session.outputs == ["scores"]
        assert (session.tfjs_version, session.backend) == ("4.22.0", "cpu")
        x = np.random.default_rng(5).normal(size=(5, 12, 12, 2)).astype("float32")
        (name, got), = session.run({"image": x}).items()
        assert name == "scores" and got.shape == (5, 4) and got.dtype == np.float32
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)
        # A TF.js error comes back as one exception, and the session keeps working after it.
        with pytest.raises(RuntimeError, match="TF.js: .*must be float32, but was int32"):
            session.run({"image": x.astype(np.int32)})
        np.testing.assert_array_equal(session.run({"image": x})["scores"], got)
    finally:
        session.close()
    model_json["format"] = "layers-model"
    (out / "model.json").write_text(json.dumps(model_json))
    assert not graph_model.detect(out)


def test_saved_model_directory_to_tfjs(saved_model, float32_tfjs):
    result = float32_tfjs
    assert result.route.formats == ["savedmodel", "tfjs"]
    assert pipeline.read_source(default_registry(), result.output).facts["precision"] == "float32"
    (entry,) = result.parity
    assert entry.checked and entry.passed and entry.max_abs_diff < 1e-4
    # The CNN's 9,772 float32 weights, and 6 constants of the graph (GELU's, Flatten's shape).
    assert weight_bytes(result.output) == 39_112
    assert result.to_json()["artifacts"][0]["bytes"] > 39_112  # and model.json
    assert len(graph_model.shard_files(result.output)) == 1


@pytest.mark.parametrize("quantize, precision, shrink", [
    ("float16", "float16", 2), ("uint16", "uint16-weights", 2), ("uint8", "uint8-weights", 4),
])
def test_quantized_weights_shrink_the_files_and_stay_within_tolerance(
    saved_model, float32_tfjs, tmp_path, quantize, precision, shrink
):
    out = tmp_path / "quantized"
    result = convhub.convert(saved_model, to="tfjs", output=out, options={"tfjs_quantize": quantize})
    (entry,) = result.parity
    assert entry.passed
    # The precision fact reached the check, which took that precision's default tolerance.
    assert entry.tolerance == parity.TOLERANCES[precision]
    # The weights really are quantized: the outputs moved, by less than the tolerance allows.
    (output,) = entry.outputs
    assert 1e-6 < entry.max_abs_diff and output.allowance_used < 1 and output.rel_rms <= entry.tolerance.max_rel_rms
    assert "relative RMS error" in entry.criterion
    # The Dense kernel (9,600 values) is quantized; the tensors under 1,024 values (biases, the
    # small kernels, the graph's scalars) stay float32 and cost 4 bytes a value as before.
    manifest = graph_model.load(out)["weightsManifest"][0]["weights"]
    floats = [w for w in manifest if w["dtype"] == "float32"]
    quantized = [w for w in floats if w.get("quantization")]
    assert [math.prod(w["shape"]) for w in quantized] == [9600]
    assert {w["quantization"]["dtype"] for w in quantized} == {quantize}
    small = [w for w in floats if not w.get("quantization")]
    assert small and all(math.prod(w["shape"]) < SMALLEST for w in small)
    # Read back from disk (what `convhub check` does), the weights manifest tells the same precision.
    assert pipeline.read_source(default_registry(), out).facts["precision"] == precision
    saved = 9600 * 4 * (1 - 1 / shrink)
    assert weight_bytes(out) == pytest.approx(weight_bytes(float32_tfjs.output) - saved, rel=0.01)

    # The precision fact is recorded on the artifact the hop wrote.
    artifact = Artifact("savedmodel", path=saved_model, facts={"signature": "serving_default"})
    facts = converter.from_saved_model(artifact, tmp_path / "again", {"tfjs_quantize": quantize})
    assert facts == {"precision": precision, "signature": "serving_default", "tfjs_weight_shards": 1,
                     "tfjs_float32_small_weights": len(small)}


def test_weights_too_small_to_quantize_leave_the_model_float32_and_say_so(tmp_path):
    """A model whose every weight is under 1,024 values has nothing worth quantizing: its file is
    float32, and its precision (hence its criteria) says so."""
    import keras

    keras.utils.set_random_seed(3)
    features = keras.Input((8,), name="features")
    model = keras.Model(features, keras.layers.Dense(4, name="scores")(keras.layers.Dense(16, activation="relu")(features)))
    result = convhub.convert(model, to="tfjs", output=tmp_path / "u8", options={"tfjs_quantize": "uint8"})
    assert result.ok and result.artifacts[-1].facts["precision"] == "float32"
    assert result.artifacts[-1].facts["tfjs_float32_small_weights"] == 2  # the kernels (zero biases fold away)
    assert '"quantization"' not in (tmp_path / "u8" / "model.json").read_text()
    assert result.parity[-1].max_abs_diff < 1e-5  # judged, and passing, as float32


def test_a_uint8_drift_names_the_weights_whose_range_rounds_the_rest_away(tmp_path):
    """One column of a Dense kernel 300 times larger than the rest (the head ignores it) sets the
    kernel's one uint8 range, whose steps round every other weight the head reads to a few
    levels: the check drifts, and its cause names that kernel and how coarse its steps are
    against its typical values; uint16 weights pass."""
    from convhub.errors import ParityError

    model = outlier_channel_model()
    with pytest.raises(ParityError) as failed:
        convhub.convert(model, to="tfjs", output=tmp_path / "u8", options={"tfjs_quantize": "uint8"})
    cause = failed.value.result.parity[-1].cause
    named = re.search(r"uint8 weights, one range per tensor, are rounded coarsest against their typical values in"
                      r" (\S+) by (\d+)% \(its range \[(\S+), (\S+)\] has steps of (\S+), for typical values of (\S+)\)",
                      cause)
    assert named and named.group(1).startswith("wide"), cause
    assert int(named.group(2)) > 50 and float(named.group(5)) > 2 * float(named.group(6))
    assert cause in failed.value.result.error and "quantized weight tensors is rounded by" in cause
    assert convhub.convert(model, to="tfjs", output=tmp_path / "u16", options={"tfjs_quantize": "uint16"}).ok


def test_a_small_shard_size_writes_several_shards_that_still_load(saved_model, tmp_path):
    out = tmp_path / "sharded"
    result = convhub.convert(saved_model, to="tfjs", output=out, options={"tfjs_shard_bytes": 8192})
    shards = graph_model.shard_files(out)
    assert len(shards) == 5  # 39,112 bytes of weights in shards of at most 8,192
    assert all(p.stat().st_size <= 8192 for p in shards)
    (entry,) = result.parity
    assert entry.passed and entry.max_abs_diff < 1e-4  # the runner put the shards back together


@pytest.mark.parametrize(
    "options, message",
    [
        ({"tfjs_quantize": "int8"}, "tfjs_quantize must be None, 'float16', 'uint8' or 'uint16', not 'int8'"),
        ({"tfjs_quantize": ["uint8"]}, "tfjs_quantize must be None, 'float16', 'uint8' or 'uint16', not ['uint8']"),
        ({"tfjs_shard_bytes": 0}, "tfjs_shard_bytes must be a positive number of bytes, not 0"),
        ({"tfjs_shard_bytes": "4MB"}, "tfjs_shard_bytes must be a positive number of bytes, not '4MB'"),
        ({"tfjs_shard_bytes": True}, "tfjs_shard_bytes must be a positive number of bytes, not True"),
    ],
)
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(UsageError) as info:
        converter.parse_options(options)
    assert str(info.value) == message


def test_options_and_their_defaults():
    assert converter.parse_options({}) == (None, 4 * 1024 * 1024)
    assert converter.parse_options({"tfjs_quantize": "uint16", "tfjs_shard_bytes": "8192"}) == ("uint16", 8192)


def test_the_route_refuses_xla_call_module_with_the_converters_reason():
    graph = default_registry().graph
    (edge,) = [c for c in graph.conversions if c.name == "savedmodel->tfjs"]
    assert edge.plugin == "tfjs"
    reason = graph.blocked(edge, {"xla_call_module": True})
    assert reason == f"refuses this model: {converter.XLA_CALL_MODULE_REASON}"
    assert "Unsupported Ops in the model before optimization: XlaCallModule" in reason
    assert graph.blocked(edge, {"xla_call_module": False}) is None
    with pytest.raises(NoRouteError, match="savedmodel → tfjs \\(tfjs\\) refuses this model: the SavedModel holds"):
        graph.best("savedmodel", "tfjs", {"xla_call_module": True})


def test_without_node_the_artifact_is_reported_as_not_checked(saved_model, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without Node.js
    result = pipeline.run(saved_model, "tfjs", tmp_path / "out")
    assert not result.ok and not (tmp_path / "out").exists()  # never reported as passed
    (entry,) = result.parity
    assert not entry.checked and not entry.passed and entry.runner == "tfjs-node"
    assert entry.reason == (
        "not checked: the tfjs-node runner needs Node.js 18+ with npm: 'node' is not on PATH (https://nodejs.org)"
    )


def test_installing_ahead_without_node_is_one_line_and_a_failure(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "CONVHUB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "convhub_tfjs.node", "install"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        "convhub_tfjs: error: the tfjs-node runner needs Node.js 18+ with npm: 'node' is not on PATH (https://nodejs.org)\n"
    )


def test_two_processes_install_the_node_packages_once_from_the_shipped_lock(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "CONVHUB_CACHE": str(cache)}
    (cache / f"{node.install_dir().name}.tmp-interrupted").mkdir(parents=True)  # a killed install's leftovers
    code = "from convhub_tfjs import node; print(node.ensure_installed())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    try:
        assert [p.returncode for p in procs] == [0, 0], outputs
        (first, _), (second, _) = outputs
        installed = Path(first.strip())
        assert second.strip() == first.strip() and installed.parent == cache
        assert installed.name.startswith("tfjs-") and (installed / node.COMPLETE).is_file()
        tfjs = json.loads((installed / "node_modules/@tensorflow/tfjs/package.json").read_text())
        assert tfjs["version"] == "4.22.0"
        assert not (installed / "node_modules/@tensorflow/tfjs-node").exists()  # no native binary
        assert sorted(p.name for p in cache.iterdir()) == [installed.name, f"{installed.name}.lock"]
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # ~300 MB


# --- graph rewrites and facts on hand-written model.json dicts (no converter, no Node.js) -----------


def b64(*ops: str) -> list[str]:
    return [base64.b64encode(op.encode()).decode() for op in ops]


def fused(name: str, op: str, *fused_ops: str) -> dict:
    return {"name": name, "op": op, "input": ["x", "w", "b"], "device": "/cpu:0",
            "attr": {"T": {"type": "DT_FLOAT"}, "fused_ops": {"list": {"s": b64(*fused_ops)}}}}


def test_unfuse_activations_moves_tanh_out_and_keeps_the_names_readers_use():
    model_json = {"modelTopology": {"node": [
        {"name": "x", "op": "Placeholder"},
        fused("dense/tanh", "_FusedMatMul", "BiasAdd", "Tanh"),
        fused("dense/relu", "_FusedMatMul", "BiasAdd", "Relu"),  # TF.js's CPU backend runs this fused
        fused("conv/tanh", "FusedDepthwiseConv2dNative", "BiasAdd", "Tanh"),
        {"name": "y", "op": "Identity", "input": ["dense/tanh"]},
    ]}}
    assert graph_model.unfuse_activations(model_json) == 2
    nodes = {n["name"]: n for n in model_json["modelTopology"]["node"]}
    assert list(nodes) == ["x", "dense/tanh/convhub_unfused", "dense/tanh", "dense/relu",
                           "conv/tanh/convhub_unfused", "conv/tanh", "y"]
    for name, op in [("dense/tanh", "_FusedMatMul"), ("conv/tanh", "FusedDepthwiseConv2dNative")]:
        inner = nodes[f"{name}/convhub_unfused"]
        assert inner["op"] == op and inner["input"] == ["x", "w", "b"] and inner["device"] == "/cpu:0"
        assert inner["attr"]["fused_ops"]["list"]["s"] == b64("BiasAdd")
        assert nodes[name] == {"name": name, "op": "Tanh", "input": [f"{name}/convhub_unfused"],
                               "attr": {"T": {"type": "DT_FLOAT"}}, "device": "/cpu:0"}
    assert nodes["dense/relu"]["attr"]["fused_ops"]["list"]["s"] == b64("BiasAdd", "Relu")
    assert nodes["y"]["input"] == ["dense/tanh"]  # reads the Tanh now, under the same name
    assert graph_model.unfuse_activations(model_json) == 0  # nothing left to move


def test_rewrite_erfc_uses_erf_and_keeps_the_node_name_and_control_inputs():
    attr = {"T": {"type": "DT_FLOAT"}}
    model_json = {"modelTopology": {"node": [
        {"name": "x", "op": "Placeholder", "input": []},
        {"name": "gelu/Erfc", "op": "Erfc", "input": ["gelu/mul", "^init"], "attr": attr},
        {"name": "gelu/mul_1", "op": "Mul", "input": ["x", "gelu/Erfc"]},
    ]}}
    assert graph_model.rewrite_erfc(model_json) == 1
    nodes = model_json["modelTopology"]["node"]
    assert [(n["name"], n["op"], n["input"]) for n in nodes] == [
        ("x", "Placeholder", []),
        ("gelu/Erfc/convhub_ones", "OnesLike", ["gelu/mul"]),
        ("gelu/Erfc/convhub_erf", "Erf", ["gelu/mul"]),
        ("gelu/Erfc", "Sub", ["gelu/Erfc/convhub_ones", "gelu/Erfc/convhub_erf", "^init"]),
        ("gelu/mul_1", "Mul", ["x", "gelu/Erfc"]),
    ]
    assert all(n["attr"] == attr for n in nodes[1:4]) and "Erfc" not in graph_model.ops_of(model_json)
    assert graph_model.rewrite_erfc(model_json) == 0


@pytest.mark.parametrize("dtypes, precision", [
    ((), "float32"), (("float16",), "float16"), (("uint16",), "uint16-weights"), (("uint8",), "uint8-weights"),
    (("uint16", "uint8"), "uint8-weights"),  # the coarsest weights decide the tolerance
])
def test_the_precision_fact_comes_from_the_weights_manifest(dtypes, precision):
    weights = [{"name": "plain", "shape": [2], "dtype": "int32"}]
    weights += [{"name": f"w{i}", "shape": [4], "dtype": "float32", "quantization": {"dtype": d}}
                for i, d in enumerate(dtypes)]
    assert graph_model.precision_of({"weightsManifest": [{"paths": ["a.bin"], "weights": weights}]}) == precision


def test_a_weight_holding_minus_infinity_stays_float32_when_the_others_quantize(tmp_path):
    """uint8 quantization of a weight holding -inf (an attention mask) gives it min=-Infinity,
    which model.json cannot hold as JSON; that weight is kept float32 and said."""
    import tensorflow as tf

    class Masked(tf.Module):
        def __init__(self):
            rng = np.random.default_rng(4)
            self.kernel = tf.Variable(rng.normal(size=(6, 1024)).astype("float32"))
            self.mask = tf.Variable(np.where(np.arange(1024) == 3, -np.inf, 0).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
        def serve(self, x):
            return {"probs": tf.nn.softmax(tf.matmul(x, self.kernel) + self.mask)}

    module = Masked()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    result = convhub.convert(tmp_path / "sm", to="tfjs", output=tmp_path / "out", options={"tfjs_quantize": "uint8"})
    facts = result.artifacts[-1].facts
    assert result.ok and len(facts["tfjs_float32_weights"]) == 1
    text = (tmp_path / "out" / "model.json").read_text()
    assert "Infinity" not in text and "NaN" not in text and '"uint8"' in text


def test_quantizing_rewrites_string_weights_as_they_were(tmp_path):
    """convhub quantizes after the conversion, re-writing every weight: a lookup table's string
    keys (stored with their lengths) must come out as they went in, or the table would find nothing."""
    import tensorflow as tf

    class Lookup(tf.Module):
        def __init__(self):
            keys, values = tf.constant(["a", "bb", "ccc"]), tf.constant([1.0, 2.0, 3.0])
            self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), 0.5)
            self.kernel = tf.Variable(np.random.default_rng(0).normal(size=(4, 1024)).astype("float32"))
            self.names = tf.constant(["a", "yy", "ccc", "bb"])

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(x, self.kernel) * tf.reduce_sum(self.table.lookup(self.names))}

    module = Lookup()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    result = convhub.convert(tmp_path / "sm", to="tfjs", output=tmp_path / "out", options={"tfjs_quantize": "uint8"})
    assert result.ok and result.parity[-1].outputs[0].rel_rms < 0.02  # 6.5 times the kernel: no key lost
    manifest = [w for g in graph_model.load(tmp_path / "out")["weightsManifest"] for w in g["weights"]]
    assert {w["dtype"] for w in manifest} >= {"string"}
    assert [w["quantization"]["dtype"] for w in manifest if w.get("quantization")] == ["uint8"]


def test_outputs_tensorflowjs_named_by_tensor_get_the_signatures_names_back():
    """A non-native jax2tf export's outputs lose their names in tensorflowjs ("Identity_2:0");
    paired by order they were compared with the wrong source output (Orbax logits vs probabilities)."""
    model_json = {"signature": {"outputs": {
        "Identity_2:0": {"name": "Identity_2:0"}, "Identity_1:0": {"name": "Identity_1:0"}, "label": {"name": "Identity:0"}}}}
    assert graph_model.restore_output_names(model_json, ["logits", "probabilities", "label"]) == 2
    assert {k: v["name"] for k, v in model_json["signature"]["outputs"].items()} == {
        "label": "Identity:0", "logits": "Identity_1:0", "probabilities": "Identity_2:0"}
    # Names that are neither the expected one nor a tensor's: left alone, not guessed.
    odd = {"signature": {"outputs": {"a": {"name": "Identity:0"}, "b": {"name": "Identity_1:0"}}}}
    assert graph_model.restore_output_names(odd, ["x", "y"]) == 0 and set(odd["signature"]["outputs"]) == {"a", "b"}


def test_stacked_recurrent_layers_passing_whole_sequences_run_in_tfjs(tmp_path):
    """LSTM(return_sequences) → GRU(return_sequences): each loop stores its steps in a TensorList
    that TF.js used to free before the stack after the loop ("reading 'backend'"). convhub returns
    the stored tensor from the loop body itself, and the model runs in Node, checked."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((5, 3), name="series"), L.LSTM(4, return_sequences=True),
                              L.GRU(4, return_sequences=True), L.Dense(2, name="tags")])
    model.save(tmp_path / "stacked.keras")
    result = convhub.convert(tmp_path / "stacked.keras", to="tfjs", output=tmp_path / "out")
    assert result.ok, result.error
    assert result.artifacts[-1].facts["tfjs_loop_returns_rewired"] == 2  # one per loop
    parity = result.parity[-1]
    assert parity.checked and parity.passed and 0 < parity.max_abs_diff < 1e-4
