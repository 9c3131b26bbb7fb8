"""convhub.testing: a pytest plugin for people who write convhub plugins.

Enable it in your plugin's tests with `pytest_plugins = ["convhub.testing"]` in conftest.py
(or `pytest -p convhub.testing`). It provides:

- `convhub_registry`: a fresh registry of the installed plugins (built-ins and yours).
- `convhub_register`: registers plugin objects for one test and returns the registry with them.
- `tiny_models`: tiny ready-made models per built-in format, built in code on first use
  (`tiny_models["keras"]`, `["keras-file"]`, `["savedmodel"]`, `["tflite"]`, `["onnx"]`,
  `["tfjs"]`, `["jax"]`), shared by the whole test session.
- `assert_conversion_contract(registry, "onnx->onnx-int8", model)`: the contract test an edge
  must pass: it converts a model through that edge (and nothing else), checks that it wrote its
  artifact and reported JSON-friendly facts, and that the artifact's runner agrees with the
  source within the tolerance its precision calls for.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

from convhub.graph import Route, missing_modules
from convhub.jsonout import jsonable
from convhub.pipeline import run_many
from convhub.results import ConversionResult
from convhub.plugins import Registry, build_registry


@pytest.fixture
def convhub_registry() -> Registry:
    return build_registry()


@pytest.fixture
def convhub_register() -> Callable[..., Registry]:
    def register(*plugins: object, **named: object) -> Registry:
        """register(plugin, ...) names each after its module or class; register(name=plugin) names it."""
        pairs = [(getattr(p, "__name__", None) or type(p).__name__.lower(), p) for p in plugins]
        pairs += list(named.items())
        return build_registry(pairs)

    return register


class TinyModels:
    """Tiny models, one per built-in format, built on first use from a small Keras model."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._made: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._made:
            builder = getattr(self, "_" + name.replace("-", "_"), None)
            if builder is None:
                raise KeyError(f"no tiny model for {name!r} (have: keras, keras-file, savedmodel, tflite, onnx, tfjs, jax)")
            self._made[name] = builder()
        return self._made[name]

    def _keras(self) -> Any:
        import os

        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras

        keras.utils.set_random_seed(0)
        x = keras.Input((4,), name="x")
        h = keras.layers.Dense(8, activation="relu")(x)
        return keras.Model(x, keras.layers.Dense(3)(h), name="tiny")

    def _keras_file(self) -> Path:
        path = self.directory / "tiny.keras"
        self["keras"].save(path)
        return path

    def _via(self, fmt: str, suffix: str) -> Path:
        from convhub import convert

        output = convert(self["keras"], to=fmt, output=self.directory / f"tiny{suffix}").output
        assert output is not None  # convert() raises unless it wrote the model
        return output

    def _savedmodel(self) -> Path:
        return self._via("savedmodel", "_savedmodel")

    def _tflite(self) -> Path:
        return self._via("tflite", ".tflite")

    def _onnx(self) -> Path:
        return self._via("onnx", ".onnx")

    def _tfjs(self) -> Path:
        return self._via("tfjs", "_tfjs")

    def _jax(self) -> Any:
        import jax.numpy as jnp
        import numpy as np

        # Through the plugin manager, not `import convhub_jax`: the kit depends on no plugin package.
        jax_plugin = build_registry().plugin_manager.get_plugin("jax")
        if jax_plugin is None:
            raise KeyError("the tiny 'jax' model needs the convhub-jax plugin, which is not installed")
        JaxFunction = jax_plugin.JaxFunction

        rng = np.random.default_rng(0)
        params = {"w": rng.normal(size=(4, 3)).astype("float32"), "b": np.zeros(3, "float32")}
        return JaxFunction(lambda p, x: jnp.tanh(x @ p["w"] + p["b"]), params, inputs={"x": ((None, 4), "float32")})


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("convhub-tiny-models"))


def assert_conversion_contract(
    registry: Registry, conversion: str, model: Any, *, options: dict[str, Any] | None = None, directory: Path | None = None
) -> ConversionResult:
    """Convert `model` through the named conversion alone and check it keeps its promises."""
    edge = next((c for c in registry.conversions if c.name == conversion), None)
    assert edge is not None, f"no conversion {conversion!r} (have: {', '.join(c.name for c in registry.conversions)})"
    missing = missing_modules(edge.requires)
    assert not missing, f"{conversion} needs {missing}, not installed"
    fmt = registry.formats[edge.target]
    directory = directory or Path(tempfile.mkdtemp(prefix="convhub-contract-"))
    output = directory / f"contract{fmt.suffix or '_' + fmt.name}"
    (result,) = run_many(
        model, [edge.target], {edge.target: output}, source=edge.source, options=options,
        registry=registry, routes={edge.target: Route(edge.source, (edge,))},
    )
    assert [a.conversion for a in result.artifacts] == [conversion], result.error
    (entry,) = result.parity
    assert entry.checked, f"{edge.target} artifacts cannot be run: give the format a runner ({entry.reason})"
    assert result.ok, f"{conversion}: {result.error}"
    assert entry.passed and entry.outputs, entry.reason
    assert output.exists(), f"{conversion} reported success but nothing is at {output}"
    assert (output.is_dir() == fmt.directory), f"format {fmt.name!r} says directory={fmt.directory}, got {output}"
    try:  # facts must survive --json as they are, not as str() of some object
        json.dumps(jsonable(result.artifacts[0].facts, strict=True), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{conversion} returned facts that are not JSON: {exc}") from None
    return result
