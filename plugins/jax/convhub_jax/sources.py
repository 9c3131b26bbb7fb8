"""What a user hands convhub for a JAX model: small wrappers that import no framework.

A JAX function is only a model together with its parameters and the shapes it takes, and an
Orbax `JaxModule` only becomes a servable model with its `ServingConfig`s: these types hold
the pieces together so convhub can read, export and run them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence


from convhub.errors import InputError

Dim = int | str | None


def class_from(obj: Any, module_prefix: str, *names: str) -> bool:
    """Whether obj's class (or a base) is one of `names` defined under `module_prefix`.

    Judged from names only, so detection never imports JAX, Flax or Orbax.
    """
    return any(
        c.__name__ in names and (c.__module__ == module_prefix or c.__module__.startswith(module_prefix + "."))
        for c in type(obj).__mro__
    )


def is_flax_linen_module(obj: Any) -> bool:
    return class_from(obj, "flax.linen", "Module")


@dataclass(frozen=True)
class InputSpec:
    """One input of a JaxFunction: dims are ints, None (dynamic) or a symbol name shared across inputs."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str


def _input_spec(name: Any, value: Any) -> InputSpec:
    import numpy as np  # here, not at import: listing plugins must stay quick

    if not isinstance(name, str) or not name.isidentifier():
        raise InputError(f"JaxFunction input name {name!r} must be a Python identifier")
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a jax.ShapeDtypeStruct, an array...
        shape, dtype = value.shape, value.dtype
    elif isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], (tuple, list)):
        shape, dtype = value
    else:
        raise InputError(f"JaxFunction input {name!r}: give (shape, dtype), e.g. ((None, 4), 'float32')")
    try:
        if dtype is None:
            raise TypeError("no dtype")
        dims = tuple(shape)
        dtype_name = np.dtype(dtype).name
    except TypeError as exc:
        raise InputError(f"JaxFunction input {name!r}: bad shape or dtype ({exc})") from None
    for d in dims:
        ok = d is None or (isinstance(d, str) and d.isidentifier()) or (
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
        )
        if not ok:
            raise InputError(
                f"JaxFunction input {name!r}: dim {d!r} must be a size, None (dynamic) or a symbol name"
            )
    return InputSpec(name, tuple(d if d is None or isinstance(d, str) else int(d) for d in dims), dtype_name)


@dataclass(frozen=True, eq=False)
class JaxFunction:
    """A JAX function `fn(params, *inputs)` with its params and input specs.

    inputs: name -> (shape, dtype), in the order `fn` takes them, e.g.
    ``{"x": ((None, 4), "float32")}``. A dim is a size, None (dynamic), or a symbol name
    ("batch", "seq") to tie dims of several inputs together. A leading None is the batch dim
    and all inputs share it; any other None is a dim of its own.
    The SavedModel signature ("serving_default") takes inputs under these names; its outputs
    are named after what `fn` returns: dict keys, or output_0, output_1... for an array or a
    tuple of arrays.
    """

    fn: Callable[..., Any]
    params: Any
    inputs: Mapping[str, Any]
    specs: tuple[InputSpec, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise InputError(f"JaxFunction needs a callable fn(params, *inputs), got a {type(self.fn).__name__}")
        if not isinstance(self.inputs, Mapping) or not self.inputs:
            raise InputError("JaxFunction needs inputs={name: (shape, dtype), ...} with at least one input")
        object.__setattr__(self, "specs", tuple(_input_spec(n, v) for n, v in self.inputs.items()))

    @classmethod
    def from_flax(
        cls,
        module: Any,
        variables: Any,
        *,
        inputs: Mapping[str, Any],
        method: str | Callable[..., Any] | None = None,
        **apply_kwargs: Any,
    ) -> JaxFunction:
        """A Flax linen module with all its variables (params, batch_stats...).

        Runs ``module.apply(variables, *inputs, method=method, **apply_kwargs)``: pass what
        inference needs, e.g. ``train=False``; mutable collections are not updated.
        """
        if not is_flax_linen_module(module):
            raise InputError(f"JaxFunction.from_flax needs a flax.linen.Module, got a {type(module).__name__}")
        if not isinstance(variables, Mapping):
            raise InputError(
                "JaxFunction.from_flax needs the variables dict from module.init(...), "
                f"got a {type(variables).__name__}"
            )

        def apply(variables, *xs):
            return module.apply(variables, *xs, method=method, **apply_kwargs)

        apply.__name__ = f"{type(module).__name__}_apply"
        return cls(apply, variables, inputs)


@dataclass(frozen=True, eq=False)
class OrbaxExport:
    """An Orbax `JaxModule` with the `ServingConfig`s that make its SavedModel signatures.

    Each config's signature key becomes a signature; its `tf_preprocessor` and
    `tf_postprocessor` are part of the exported model (and of the parity reference).
    """

    module: Any
    serving_configs: Any
    configs: tuple[Any, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not class_from(self.module, "orbax.export", "JaxModule"):
            raise InputError(f"OrbaxExport needs an orbax.export.JaxModule, got a {type(self.module).__name__}")
        configs = self.serving_configs
        if class_from(configs, "orbax.export", "ServingConfig"):
            configs = (configs,)
        elif isinstance(configs, Sequence) and not isinstance(configs, str):
            configs = tuple(configs)
        else:
            raise InputError(
                f"OrbaxExport needs a ServingConfig or a list of them, got a {type(configs).__name__}"
            )
        if not configs:
            raise InputError("a JaxModule needs at least one ServingConfig")
        for sc in configs:
            if not class_from(sc, "orbax.export", "ServingConfig"):
                raise InputError(f"OrbaxExport: a {type(sc).__name__} is not an orbax.export.ServingConfig")
        object.__setattr__(self, "configs", configs)
