"""StableHLO → .tflite with litert-converter: no TensorFlow and no JAX in its environment.

litert-converter 0.5 has no public entry point for StableHLO; this is the call sequence
litert-torch uses (`litert_torch/_convert/litert_converter.py`), kept here in one place and
pinned by tests/test_private_apis.py: an MLIR context prepared for the converter, the portable
artifact deserialized, the signature set on its main function, the TFLite passes, the flatbuffer.
Runs in the `litert-converter` toolchain's worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from convhub.types import Artifact

from convhub_jax.modern import MODULE_FILE, SIGNATURE_FILE

SIGNATURE = "serving_default"


def convert_bytes(module: bytes, destination: Path, inputs: list[str], outputs: list[str]) -> None:
    from litert_converter.mlir import ir, passmanager
    from litert_converter.mlir._mlir_libs import converter_api_ext as api
    from litert_converter.mlir.dialects import stablehlo

    context = ir.Context()
    api.prepare_mlir_context(context)
    with context:
        parsed = stablehlo.deserialize_portable_artifact(context, module)
        api.set_signature(parsed.operation, signature_name=SIGNATURE, input_names=inputs, output_names=outputs)
        api.run_convert_to_tfl_passes(parsed, passmanager.PassManager(), api.ConvertToTFLConfig())
        api.export_flatbuffer_to_file(parsed.operation, str(destination))


def from_stablehlo(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    assert artifact.path is not None
    signature = json.loads((artifact.path / SIGNATURE_FILE).read_text())
    convert_bytes((artifact.path / MODULE_FILE).read_bytes(), destination,
                  [i["name"] for i in signature["inputs"]], list(signature["outputs"]))
    return {"signature": SIGNATURE, "outputs": list(signature["outputs"]), "precision": "float32"}


def version() -> str:
    """The litert-converter this environment has (tests/test_private_apis.py pins it)."""
    import importlib.metadata

    return importlib.metadata.version("litert-converter")
