"""convhub-tflm's own tests, written with convhub's testing kit as any plugin author would."""

from convhub.testing import assert_conversion_contract
from convhub_tflm import compile_and_dump


def test_the_plugin_is_installed_and_named(convhub_registry):
    assert convhub_registry.formats["tflm"].plugin == "tflm"
    route = convhub_registry.graph.best("keras", "tflm")
    assert route.formats == ["keras", "savedmodel", "tflite", "tflm"]
    assert route.hops[-1].plugin == "tflm"


def test_tflite_to_tflm_keeps_the_contract(convhub_registry, tiny_models, tmp_path):
    result = assert_conversion_contract(convhub_registry, "tflite->tflm", tiny_models["tflite"], directory=tmp_path)
    c_file = result.output
    text = c_file.read_text()
    assert "alignas(16) const unsigned char g_model[]" in text and "g_model_len" in text
    data, aligned = compile_and_dump(c_file, "g_model")
    assert aligned and data == tiny_models["tflite"].read_bytes()  # the bytes round-trip exactly


def test_the_array_name_is_an_option(convhub_registry, tiny_models, tmp_path):
    result = assert_conversion_contract(convhub_registry, "tflite->tflm", tiny_models["tflite"],
                                        options={"tflm_array_name": "model_data"}, directory=tmp_path)
    data, _ = compile_and_dump(result.output, "model_data")
    assert data == tiny_models["tflite"].read_bytes()
