"""convhub.testing, the kit for plugin authors, used on the built-in edges themselves."""

import pytest

from convhub import hookimpl
from convhub.testing import assert_conversion_contract
from convhub.types import Conversion, Format


@pytest.mark.parametrize("name, fmt", [
    ("keras", "keras"), ("keras-file", "keras"), ("savedmodel", "savedmodel"), ("tflite", "tflite"),
    ("onnx", "onnx"), ("tfjs", "tfjs"), ("jax", "jax"),
])
def test_tiny_models_exist_for_every_built_in_format(tiny_models, convhub_registry, name, fmt):
    from convhub.pipeline import read_source

    assert read_source(convhub_registry, tiny_models[name]).format == fmt


@pytest.mark.parametrize("edge, model", [
    ("jax->savedmodel", "jax"), ("jax->savedmodel-tf-ops", "jax"), ("keras->savedmodel", "keras"),
    ("savedmodel->tflite", "savedmodel"), ("savedmodel->onnx", "savedmodel"), ("tflite->onnx", "tflite"),
    ("savedmodel->tfjs", "savedmodel"), ("savedmodel->tfserving", "savedmodel"),
])
def test_every_built_in_edge_keeps_the_contract(convhub_registry, tiny_models, tmp_path, edge, model):
    result = assert_conversion_contract(convhub_registry, edge, tiny_models[model], directory=tmp_path)
    assert result.parity[0].max_abs_diff < 1e-4


def test_the_contract_catches_an_edge_that_lies(convhub_register, tiny_models, tmp_path):
    """An edge that claims float32 but writes a different model fails the contract."""

    class Liar:
        @hookimpl
        def convhub_formats(self):
            return [Format("tflite-liar", "claims to be the model", suffix=".tflite")]

        @hookimpl
        def convhub_conversions(self):
            def convert(artifact, destination, options):
                import convhub

                other = tiny_models["keras"].__class__.from_config(tiny_models["keras"].get_config())  # fresh weights
                destination.write_bytes(convhub.convert(other, to="tflite").output.read_bytes())

            return [Conversion("keras", "tflite-liar", convert=convert)]

        @hookimpl
        def convhub_runners(self):
            from convhub.types import Runner
            from convhub_tflite.tflite import Session

            return [Runner("tflite-liar", load=Session, name="litert")]

    registry = convhub_register(liar=Liar())
    with pytest.raises(AssertionError, match="keras->tflite-liar: tflite-liar"):
        assert_conversion_contract(registry, "keras->tflite-liar", tiny_models["keras"], directory=tmp_path)
