"""convhub-onnx-int8's own tests, written with convhub's testing kit."""

import onnx

from convhub.testing import assert_conversion_contract


def test_quantizing_keeps_the_contract_and_shrinks_weights(convhub_registry, tiny_models, tmp_path):
    result = assert_conversion_contract(convhub_registry, "onnx->onnx-int8", tiny_models["onnx"], directory=tmp_path)
    assert result.artifacts[0].facts["precision"] == "dynamic-range"
    (entry,) = result.parity
    assert entry.runner == "onnxruntime-int8" and entry.max_abs_diff > 0  # really quantized, and within tolerance
    model = onnx.load(result.output)
    assert any(init.data_type == onnx.TensorProto.INT8 for init in model.graph.initializer)


def test_routes_reach_the_new_format_from_every_source(convhub_registry):
    for source in ("keras", "savedmodel", "tflite"):
        route = convhub_registry.graph.best(source, "onnx-int8")
        assert route.formats[-2:] == ["onnx", "onnx-int8"] and route.hops[-1].plugin == "onnx-int8"
