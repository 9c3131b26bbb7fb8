"""Keras → SavedModel → TFLite for real: TensorFlow converts, the LiteRT interpreter runs the result."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

import convhub
from convhub import cli
from convhub import pipeline
from convhub import hookimpl
from convhub.errors import ConversionError, ParityError
from convhub.plugins import Registry, plugin_manager
from convhub.types import Conversion
from conftest import build_cnn, run_cli


def litert_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a .tflite independently of convhub's runner code."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    (result,) = runner(image=x).values()
    return result


def test_cli_converts_a_keras_file_with_parity(tmp_path, cnn_file):
    out = tmp_path / "out.tflite"
    out.write_text("an old file that --force replaces")
    proc = run_cli("convert", "keras→tflite", cnn_file, "-o", out, "--json", "--force")
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(proc.stdout)["results"]
    assert report["ok"] is True
    assert report["route"] == ["keras", "savedmodel", "tflite"]
    assert [a["format"] for a in report["artifacts"]] == ["savedmodel", "tflite"]
    assert report["artifacts"][-1]["path"] == str(out)
    assert report["artifacts"][-1]["bytes"] == out.stat().st_size > 1000
    assert [p["format"] for p in report["parity"]] == ["savedmodel", "tflite"]
    assert all(p["passed"] and p["checked"] and p["max_abs_diff"] < 1e-4 for p in report["parity"])
    assert report["facts"]["inputs"] == [{"name": "image", "shape": [None, 12, 12, 2], "dtype": "float32"}]
    assert "route: keras → savedmodel → tflite" in proc.stderr  # the human summary goes to stderr

    # Independently of convhub: the written file agrees with the Keras model at another batch size.
    import keras

    model = keras.saving.load_model(cnn_file)
    x = np.random.default_rng(5).normal(size=(5, 12, 12, 2)).astype("float32")
    np.testing.assert_allclose(litert_outputs(out, x), model(x).numpy(), atol=1e-4)


def test_library_converts_an_in_memory_model(tmp_path):
    model = build_cnn(seed=3)
    out = tmp_path / "nested" / "model.tflite"
    result = convhub.convert(model, to="tflite", output=out)
    assert result.ok and result.output == out and out.is_file()
    assert result.route.formats == ["keras", "savedmodel", "tflite"]
    assert [p.format for p in result.parity] == ["savedmodel", "tflite"]
    assert all(p.passed and p.max_abs_diff < 1e-4 for p in result.parity)
    x = np.random.default_rng(1).uniform(-1, 1, size=(4, 12, 12, 2)).astype("float32")
    np.testing.assert_allclose(litert_outputs(out, x), model(x).numpy(), atol=1e-4)


def test_library_without_output_writes_to_a_fresh_temporary_folder():
    result = convhub.convert(build_cnn(), to="savedmodel")
    assert result.output.is_dir() and (result.output / "saved_model.pb").exists()
    assert result.output.parent.name.startswith("convhub-out-")


class DriftedTFLite:
    """A real but wrong conversion: scales the last layer's weights by 5% before converting."""

    @hookimpl
    def convhub_conversions(self):
        def convert(artifact, destination, options):
            import keras
            import tensorflow as tf

            model = keras.models.clone_model(artifact.model)
            model.set_weights(artifact.model.get_weights())
            kernel = model.layers[-1].kernel
            kernel.assign(kernel * 1.05)
            with tempfile.TemporaryDirectory() as tmp:
                model.export(tmp, verbose=False)
                destination.write_bytes(tf.lite.TFLiteConverter.from_saved_model(tmp).convert())
            return {"precision": "float32"}

        return [Conversion("keras", "tflite", convert=convert, cost=0.5, name="keras->tflite-drifted")]


def registry_with(plugin, name):
    pm = plugin_manager()
    pm.register(plugin, name=name)
    return Registry(pm)


def test_a_drifted_conversion_fails_the_check_and_writes_nothing(tmp_path, monkeypatch, capsys):
    registry = registry_with(DriftedTFLite(), "drifted")
    out = tmp_path / "model.tflite"
    with pytest.raises(ParityError) as info:
        convhub.convert(build_cnn(), to="tflite", output=out, registry=registry)
    result = info.value.result
    assert result.route.formats == ["keras", "tflite"]
    assert [p.passed for p in result.parity] == [False]
    assert "tflite: output 'scores': " in str(info.value) and "of values beyond 0.0001 + 0.0001·|ref|" in str(info.value)
    assert result.parity[0].max_abs_diff > 1e-3
    assert not out.exists() and list(tmp_path.iterdir()) == []

    kept = pipeline.run(build_cnn(), "tflite", out, registry=registry, keep_failed=True)
    assert not kept.ok and kept.output == out and out.is_file()

    # The command line says so with exit 1.
    monkeypatch.setattr(pipeline, "default_registry", lambda: registry)
    model_file = tmp_path / "m.keras"
    build_cnn().save(model_file)
    code = cli.main(["convert", "keras→tflite", str(model_file), "-o", str(tmp_path / "cli.tflite"), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    report = json.loads(captured.out)
    assert report["ok"] is False and report["results"][0]["parity"][0]["passed"] is False
    assert not (tmp_path / "cli.tflite").exists()


class HalfWriter:
    """A converter that dies halfway through writing (an error, or Ctrl-C)."""

    def __init__(self, exc):
        self.exc = exc

    @hookimpl
    def convhub_conversions(self):
        def convert(artifact, destination, options):
            destination.write_bytes(b"TFL3 half a model")
            raise self.exc

        return [Conversion("keras", "tflite", convert=convert, cost=0.5, name="keras->tflite-dies")]


@pytest.mark.parametrize("exc", [RuntimeError("converter crashed"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_conversion_leaves_nothing_at_the_output(tmp_path, exc):
    registry = registry_with(HalfWriter(exc), "half")
    out = tmp_path / "model.tflite"
    temp_before = set(Path(tempfile.gettempdir()).glob("convhub-*"))
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            convhub.convert(build_cnn(), to="tflite", output=out, registry=registry)
    else:
        with pytest.raises(ConversionError, match="keras → tflite \\(half\\) failed: RuntimeError: converter crashed"):
            convhub.convert(build_cnn(), to="tflite", output=out, registry=registry)
    assert list(tmp_path.iterdir()) == []
    assert set(Path(tempfile.gettempdir()).glob("convhub-*")) == temp_before  # the work folder is gone too
