"""The converters' private APIs convhub relies on, pinned: each test fails loudly, naming the
file to revisit, as soon as an upgrade moves or changes one of them.

- tf2onnx `convert._convert_common`: the public `from_graph_def` takes no `initialized_tables`,
  which SavedModels with lookup tables need (plugins/onnx/convhub_onnx/tf2onnx_convert.py).
- orbax-export `ExportManager._jax_module`: an ExportManager keeps no public handle on its
  JaxModule (plugins/jax/convhub_jax/export.py; OrbaxExport is the public way in).
- Keras `Layer._build_shapes_dict`: a subclassed model's input shape, exactly as Keras's own
  `Model.export` reads it (plugins/tensorflow/convhub_tensorflow/keras_model.py).
- TensorFlow `TFLiteConverter._experimental_calibrate_only`: the float model with the calibrated
  range of every tensor, which the int8 file no longer holds once the converter narrowed some
  (plugins/tflite/convhub_tflite/int8.py).
"""

import importlib.metadata
import inspect

import pytest

PINNED = {"tf2onnx": "1.17.0", "orbax-export": "0.0.8", "keras": "3.15.1", "tensorflow": "2.19.0"}


@pytest.mark.parametrize("distribution", sorted(PINNED))
def test_the_versions_whose_private_apis_were_verified(distribution):
    installed = importlib.metadata.version(distribution)
    assert installed == PINNED[distribution], (
        f"{distribution} is {installed}, but convhub's use of its private API was verified on {PINNED[distribution]}:"
        " re-check the module named in this file's docstring, then update PINNED"
    )


def test_tf2onnx_convert_common_takes_what_convhub_passes():
    from tf2onnx.convert import _convert_common

    params = inspect.signature(_convert_common).parameters
    assert list(params)[:2] == ["frozen_graph", "name"] and "custom_op_handlers" in params
    assert any(p.kind is p.VAR_KEYWORD for p in params.values())  # opset, input_names, tensors_to_rename...
    assert "process_tf_graph(" in inspect.getsource(_convert_common)  # where the keyword arguments go
    from tf2onnx.tfonnx import process_tf_graph

    takes = inspect.signature(process_tf_graph).parameters
    for key in ("initialized_tables", "tensors_to_rename", "input_names", "output_names", "opset"):
        assert key in takes, f"tf2onnx's process_tf_graph no longer takes {key!r}"


def test_orbax_export_manager_keeps_its_jax_module():
    from orbax.export import ExportManager

    assert "self._jax_module" in inspect.getsource(ExportManager.__init__)
    assert isinstance(inspect.getattr_static(ExportManager, "serving_signatures"), property)


def test_keras_records_build_shapes_where_convhub_reads_them():
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(keras.ops.zeros((1, 5)))
    assert list(model._build_shapes_dict.values()) == [(1, 5)]


def test_litert_converter_private_entry_point_converts_stablehlo():
    """litert-converter's private StableHLO entry point (plugins/jax/convhub_jax/litert.py), in
    its own toolchain: the version it was verified on, and a real module through every call."""
    import numpy as np

    from convhub import toolchains, workers
    from convhub_jax import LITERT_CONVERTER, litert

    if toolchains.unavailable(LITERT_CONVERTER) is not None:
        pytest.skip("no Python or uv for the litert-converter toolchain")
    jax = pytest.importorskip("jax")
    from jax import export

    exported = export.export(jax.jit(lambda x: jax.numpy.tanh(x) * 2), platforms=("cpu",))(
        jax.ShapeDtypeStruct((2, 3), np.float32))
    pool = workers.Pool(jobs=1)
    try:
        assert pool.call(litert.version, toolchain=LITERT_CONVERTER) == "0.5.0"
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "m.tflite"
            pool.call(litert.convert_bytes, (exported.mlir_module_serialized, out, ["x"], ["y"]),
                      toolchain=LITERT_CONVERTER)
            assert out.read_bytes()[4:8] == b"TFL3"
    finally:
        pool.shutdown()


def test_tflite_converter_stops_after_calibration_when_asked():
    from tensorflow.lite.python import lite

    source = inspect.getsource(lite)
    assert "self._experimental_calibrate_only = False" in source  # an attribute of every converter
    assert "if self._experimental_calibrate_only:" in source  # returns the calibrated model there


def test_tflite_converter_hands_the_calibrated_model_to_its_mlir_quantizer():
    """ranges.py wraps lite._mlir_quantize, which int8 post-training quantization calls with the
    calibrated float model (a min and a max on each activation) as its first argument."""
    from tensorflow.lite.python import lite

    source = inspect.getsource(lite.TFLiteConverterBase._quantize)
    assert "return _mlir_quantize(\n          calibrated," in source
    assert list(inspect.signature(lite._mlir_quantize).parameters)[0] == "input_data_str"
