"""SavedModel → TF.js graph model with the tensorflowjs converter's Python API, in-process."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from convhub.errors import UsageError
from convhub.types import Artifact
from convhub_tensorflow import frameworks

from convhub_tfjs import graph_model
from convhub_tfjs.quantize import SMALLEST
from convhub_tfjs.quantize import quantize as quantize_weights

# tfjs_quantize → the "precision" fact of the written model. TF.js dequantizes the weights to
# float32 when it loads them and computes in float32, so only the weights lose precision.
PRECISION = {None: "float32", **graph_model.QUANTIZED_PRECISION}
DEFAULT_SHARD_BYTES = 4 * 1024 * 1024  # the converter's own default

XLA_CALL_MODULE_REASON = (
    "the SavedModel holds XlaCallModule ops (StableHLO from a natively serialized JAX export), which"
    " tensorflowjs cannot convert: \"Unsupported Ops in the model before optimization: XlaCallModule\""
)


def parse_options(options: Mapping[str, Any]) -> tuple[str | None, int]:
    quantize = options.get("tfjs_quantize")
    if not (quantize is None or isinstance(quantize, str)) or quantize not in PRECISION:
        raise UsageError(f"tfjs_quantize must be None, 'float16', 'uint8' or 'uint16', not {quantize!r}")
    shard_bytes = options.get("tfjs_shard_bytes")
    if shard_bytes is None:
        shard_bytes = DEFAULT_SHARD_BYTES
    if isinstance(shard_bytes, str) and shard_bytes.isascii() and shard_bytes.isdigit():  # from `--option tfjs_shard_bytes=N`
        shard_bytes = int(shard_bytes)
    if isinstance(shard_bytes, bool) or not isinstance(shard_bytes, int) or shard_bytes <= 0:
        raise UsageError(f"tfjs_shard_bytes must be a positive number of bytes, not {shard_bytes!r}")
    return quantize, shard_bytes


def notes(facts: Mapping[str, Any]) -> list[str]:
    """What this hop does to every model, said by `convhub route --explain`."""
    return [
        "frozen with TF_ENABLE_ONEDNN_OPTS=0: oneDNN's Grappler remapper would fuse Conv+BiasAdd+HardSwish"
        " into a _FusedConv2D with a _fusedhardswish activation TF.js cannot run (MobileNetV3)",
        "written with v2 control flow (While/If), which TF.js computes; v1 loops it cannot",
        "a loop body returns the tensor it stores in a TensorList, not an Identity of it: TF.js would"
        " free it when the step ends (RNNs with return_sequences)",
        f"with tfjs_quantize: weight tensors under {SMALLEST} values (biases, scalars) stay float32,"
        " as TFLite's weight quantizer leaves them: rounded, they would shift every activation of their layer",
    ]


def refuse(facts: Mapping[str, Any]) -> str | None:
    return XLA_CALL_MODULE_REASON if facts.get("xla_call_module") else None


def supported_ops() -> set[str]:
    """The TensorFlow ops TF.js runs: the op lists tensorflowjs itself checks models against."""
    import tensorflowjs

    names: set[str] = set()
    for path in sorted((Path(tensorflowjs.__file__).parent / "op_list").glob("*.json")):
        names |= {op["tfOpName"] for op in json.loads(path.read_text(encoding="utf-8"))}
    return names


def from_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    quantize, shard_bytes = parse_options(options)  # before the slow import, so a typo fails fast
    frameworks.tensorflow()  # quietly, before tensorflowjs imports it
    # tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports IPython (not
    # installed) whenever sys.stdout is not the terminal: under pytest, redirect_stdout, a notebook.
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    with warnings.catch_warnings():  # tensorflow_hub's pkg_resources deprecation, not the user's concern
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
        from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_converter

    signature = artifact.facts.get("signature", "serving_default")
    _convert(tfjs_converter, artifact.path, destination, signature, shard_bytes)
    kept: dict[str, Any] = {}
    if quantize:  # what the converter's quantization map does, chosen weight by weight (quantize.py)
        nonfinite, small = quantize_weights(destination, quantize, shard_bytes)
        kept |= {"tfjs_float32_weights": nonfinite} if nonfinite else {}
        kept |= {"tfjs_float32_small_weights": small} if small else {}
    facts = {**_finish(destination, artifact.facts.get("outputs") or []), **kept}
    # What the file holds: float32 when every weight was too small to quantize.
    precision = graph_model.precision_of(graph_model.load(destination)) if quantize else "float32"
    return {"precision": precision, "signature": signature, **facts}


def _convert(tfjs_converter, saved_model: Path, destination: Path, signature: str, shard_bytes: int) -> None:
    # The converter's op check would reject Erfc (Keras' exact GELU), which rewrite_erfc expresses
    # with ops TF.js has; so the check runs below, on the final graph, with the converter's op lists.
    # Assert, CheckNumerics and Print have no TF.js kernel: they are stripped (jax2tf's shape
    # checks are Asserts), and the parity check still proves what the model computes.
    tfjs_converter.convert_tf_saved_model(
        str(saved_model),
        str(destination),
        signature_def=signature,
        weight_shard_size_bytes=shard_bytes,
        skip_op_check=True,
        strip_debug_ops=True,
        # Keras RNNs are while loops: written as v1 control flow (Enter/Exit/NextIteration),
        # TF.js cannot compute their outputs ("Cannot compute the outputs [Identity]"); as v2
        # (While/If with function bodies) it runs them (bidirectional LSTM: 4.5e-8).
        control_flow_v2=True,
    )


def _finish(destination: Path, outputs: list[str]) -> dict:
    """Make the written graph one TF.js runs (Erfc, fused activations), its outputs named as the
    SavedModel's, and check its ops."""
    model_json = graph_model.load(destination)
    changed = graph_model.restore_output_names(model_json, outputs)
    rewired = graph_model.return_list_items_whole(model_json)
    if graph_model.rewrite_erfc(model_json) + graph_model.unfuse_activations(model_json) + changed + rewired:
        (destination / graph_model.MODEL_JSON).write_text(json.dumps(model_json), encoding="utf-8")
    unsupported = graph_model.ops_of(model_json) - supported_ops()
    if unsupported:
        raise ValueError(f"Unsupported Ops in the model after optimization: {', '.join(sorted(unsupported))}")
    facts: dict = {"tfjs_weight_shards": len(graph_model.shard_files(destination))}
    if rewired:
        facts["tfjs_loop_returns_rewired"] = rewired
    return facts
