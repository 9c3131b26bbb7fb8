"""ONNX (from jax2onnx) → SavedModel with onnx2tf, in its own toolchain (TensorFlow 2.21).

onnx2tf assumes every rank-3 to rank-5 input is channels-first (NCHW, PyTorch's way) and turns
it channels-last for TensorFlow, moving the second axis last in the signature: a JAX model's
(2, 8, 8, 3) image input becomes (2, 8, 3, 8), a (2, 5, 16) sequence (2, 16, 5), so the
SavedModel no longer takes the inputs the JAX model takes (measured with onnx2tf 2.6.9; fed
the permuted input, it computes the same). Each such input is therefore declared
channels-first to onnx2tf under its own name, with a Transpose back inside the graph: onnx2tf
then makes it channels-last again, which is exactly the JAX model's layout (max abs error 1.2e-7
on an NNX CNN, 4.8e-7 on a rank-3 input, the same as onnxruntime's on that ONNX file).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from convhub.types import Artifact

SAVED_MODEL_FILES = ("saved_model.pb", "variables", "assets", "fingerprint.pb")


def refuse(facts: Mapping[str, Any]) -> str | None:
    if facts.get("onnx_from") != "jax2onnx":
        return ("onnx2tf is used for ONNX from jax2onnx only: convhub restores the channels-last layout of those"
                " around onnx2tf's channels-first convention")
    return None


def notes(facts: Mapping[str, Any]) -> list[str]:
    """Which inputs the hop declares channels-first to onnx2tf, for `convhub route --explain`."""
    wrapped = [spec for spec in facts.get("inputs") or () if 3 <= len(getattr(spec, "shape", ())) <= 5]
    if not wrapped:
        return []
    names = ", ".join(f"{s.name}{list(s.shape)}" for s in wrapped)
    return [f"rank-3..5 inputs ({names}): declared channels-first to onnx2tf with a Transpose back inside the"
            " ONNX graph, so the SavedModel takes them in the JAX model's own layout (onnx2tf alone would"
            " move their second axis last: (N, H, W, C) → (N, W, C, H))"]


def channels_first_inputs(model: Any) -> int:
    """Declare each rank-3..5 input channels-first, transposed back to channels-last inside."""
    from onnx import helper

    count = 0
    for index, value in enumerate(list(model.graph.input)):
        dims = list(value.type.tensor_type.shape.dim)
        if not 3 <= len(dims) <= 5:
            continue
        inner = f"{value.name}__channels_last"
        for node in model.graph.node:
            node.input[:] = [inner if name == value.name else name for name in node.input]
        rank = len(dims)
        perm = [0, *range(2, rank), 1]  # NCHW → NHWC
        model.graph.node.insert(0, helper.make_node("Transpose", [value.name], [inner], perm=perm,
                                                    name=f"convhub_{value.name}_to_channels_last"))
        shape = [dims[0], dims[-1], *dims[1:-1]]
        declared = helper.make_tensor_value_info(
            value.name, value.type.tensor_type.elem_type,
            [d.dim_param or d.dim_value if d.dim_param or d.dim_value else None for d in shape])
        model.graph.input.remove(value)
        model.graph.input.insert(index, declared)
        count += 1
    return count


def to_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    import onnx
    import onnx2tf

    assert artifact.path is not None
    model = onnx.load(str(artifact.path))
    outputs = [o.name for o in model.graph.output]
    wrapped = channels_first_inputs(model)
    onnx.checker.check_model(model)
    with tempfile.TemporaryDirectory(prefix="convhub-onnx2tf-") as scratch:
        source = Path(scratch) / "model.onnx"
        onnx.save(model, str(source))
        out = Path(scratch) / "out"
        onnx2tf.convert(input_onnx_file_path=str(source), output_folder_path=str(out), non_verbose=True,
                        output_signaturedefs=True, flatbuffer_direct_output_saved_model=True)
        destination.mkdir()
        for name in SAVED_MODEL_FILES:
            if (out / name).exists():
                shutil.move(str(out / name), str(destination / name))
    if not (destination / "saved_model.pb").is_file():
        raise RuntimeError("onnx2tf wrote no saved_model.pb")
    return {"signature": "serving_default", "signatures": ["serving_default"], "outputs": outputs,
            "xla_call_module": False, "channels_last_inputs_restored": wrapped}
