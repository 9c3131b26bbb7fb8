"""The valid range of a JAX function's inputs, read from what it does to them first.

A Flax CNN that starts with `image / 127.5 - 1.0` takes pixels in [0, 255], as a Keras model
that starts with `Rescaling(1/127.5, offset=-1)` does; generated parity inputs and int8
calibration (parity.make_inputs) should then be pixels, not [-1, 1), a sliver of that range.
The same rule as Keras's (parity.rescaled_range) reads the jaxpr: an input used once, through
jit boundaries and dtype casts, multiplied or divided by a constant and then, perhaps, shifted by
one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


# Primitives that call an inner jaxpr with the same arguments (a jit boundary, a custom derivative).
_CALLS = ("pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "remat")


def input_ranges(fn: Callable[..., Any], specs: Sequence[Any]) -> dict[str, list[float]]:
    """{input name: [low, high]} for the inputs `fn` rescales first; nothing for the others, or
    when `fn` does not trace (the export reports that). `specs`: TensorSpecs or a JaxFunction's
    InputSpecs (a dynamic dim is None or a symbol's name, traced here as 1)."""
    import jax

    from convhub import parity  # here, not at import: listing plugins imports no numpy

    structs = [jax.ShapeDtypeStruct(tuple(d if isinstance(d, int) else 1 for d in s.shape), s.dtype) for s in specs]
    try:
        closed = jax.make_jaxpr(fn)(*structs)
    except Exception:  # noqa: BLE001 - the export that follows reports a function that does not trace
        return {}
    ranges = {}
    for name, var in zip((s.name for s in specs), closed.jaxpr.invars):
        affine = _rescaling(closed.jaxpr, var)
        found = parity.rescaled_range(*affine) if affine else None
        if found is not None:
            ranges[name] = found
    return ranges


def _rescaling(jaxpr: Any, var: Any) -> tuple[Any, Any] | None:
    """(scale, offset) when `var` is first mapped by x * scale + offset (parity.rescaling's rule),
    past jit boundaries and dtype casts; else None."""
    import operator

    from convhub import parity

    jaxpr, var = _first_real_use(jaxpr, var)
    use = _only_use(jaxpr, var)
    if use is None:
        return None
    shift = _only_use(jaxpr, use.outvars[0])
    return parity.rescaling(var, use.primitive.name, use.invars, use.outvars[0],
                            shift.primitive.name if shift is not None else "",
                            shift.invars if shift is not None else (), _constant, same=operator.is_)


def _first_real_use(jaxpr: Any, var: Any) -> tuple[Any, Any]:
    """Into calls of inner jaxprs and through dtype casts, to where `var` is computed with."""
    while True:
        use = _only_use(jaxpr, var)
        if use is None:
            return jaxpr, var
        if use.primitive.name == "convert_element_type":
            var = use.outvars[0]
            continue
        inner = _inner_jaxpr(use)
        if use.primitive.name in _CALLS and inner is not None and len(inner.invars) == len(use.invars):
            jaxpr, var = inner, inner.invars[list(use.invars).index(var)]
            continue
        return jaxpr, var


def _only_use(jaxpr: Any, var: Any) -> Any | None:
    uses = [eqn for eqn in jaxpr.eqns if any(v is var for v in eqn.invars)]
    return uses[0] if len(uses) == 1 and sum(v is var for v in uses[0].invars) == 1 else None


def _inner_jaxpr(eqn: Any) -> Any | None:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(key)
        if inner is not None:
            return getattr(inner, "jaxpr", inner)  # a ClosedJaxpr holds its Jaxpr
    return None


def _constant(atom: Any) -> Any | None:
    """The value of a literal operand (a number written in the function), else None."""
    import numpy as np

    value = getattr(atom, "val", None)
    if value is None or not hasattr(atom, "aval"):
        return None
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        return None
    return array if np.all(np.isfinite(array)) else None
