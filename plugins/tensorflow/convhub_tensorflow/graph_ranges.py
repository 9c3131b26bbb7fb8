"""The valid range of a SavedModel signature's inputs, read from what its graph does to them first.

A Keras model exported with `model.export()` keeps its `Rescaling(1/255)` as `Mul` and `AddV2`
by constants inside the function the signature calls; read as a Keras model it would say pixels
in [0, 255] (keras_model.input_ranges), and read as a SavedModel it should too, or its parity
inputs and int8 calibration fall in [-1, 1), a sliver of its range. The rule is the same
(parity.rescaled_range): an input used once, through identities, casts and function calls,
multiplied or divided by a constant and then, perhaps, shifted by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


_PASS_THROUGH = ("Identity", "Cast", "EnsureShape")
_CALLS = ("PartitionedCall", "StatefulPartitionedCall")
_KINDS = {"Mul": "mul", "RealDiv": "div", "AddV2": "add", "Add": "add", "BiasAdd": "add", "Sub": "sub"}


def input_ranges(graph: Any, names: Sequence[str]) -> dict[str, list[float]]:
    """{input name: [low, high]} for the inputs a signature's graph rescales first (`graph`: the
    GraphDef of the signature's concrete function; an input is found by its placeholder's name)."""
    from convhub import parity  # here, not at import: listing plugins imports no numpy

    library = {f.signature.name: f for f in graph.library.function}
    ranges = {}
    for name in names:
        try:
            affine = _rescaling(list(graph.node), name, library)
        except (KeyError, IndexError, ValueError, TypeError):  # a graph not shaped as expected
            affine = None
        found = parity.rescaled_range(*affine) if affine else None
        if found is not None:
            ranges[name] = found
    return ranges


def _rescaling(nodes: list[Any], tensor: str, library: dict[str, Any]) -> tuple[Any, Any] | None:
    """(scale, offset) when `tensor` is first mapped by x * scale + offset (parity.rescaling's
    rule), past identities, casts and calls; else None."""
    from convhub import parity

    for _ in range(64):  # identities, casts and calls, a few levels deep
        users = _users(nodes, tensor)
        if len(users) != 1:
            return None
        node = users[0]
        if node.op in _PASS_THROUGH:
            tensor = node.name
        elif node.op in _CALLS:
            called = library[node.attr["f"].func.name]
            index = _data_inputs(node).index(tensor)
            nodes, tensor = list(called.node_def), called.signature.input_arg[index].name
        else:
            break
    else:
        return None
    shifts = _users(nodes, node.name)
    shift = shifts[0] if len(shifts) == 1 else None
    return parity.rescaling(tensor, _KINDS.get(node.op, ""), _data_inputs(node), node.name,
                            _KINDS.get(shift.op, "") if shift is not None else "",
                            _data_inputs(shift) if shift is not None else (), lambda name: _constant(nodes, name))


def _data_inputs(node: Any) -> list[str]:
    """The node names (or function arguments) a node reads, without control inputs or output indices."""
    return [i.split(":")[0] for i in node.input if not i.startswith("^")]


def _users(nodes: list[Any], tensor: str) -> list[Any]:
    return [n for n in nodes if tensor in _data_inputs(n)]


def _constant(nodes: list[Any], name: str) -> Any | None:
    import numpy as np
    from tensorflow import make_ndarray

    node = next((n for n in nodes if n.name == name), None)
    if node is None or node.op != "Const":
        return None
    value = np.asarray(make_ndarray(node.attr["value"].tensor), np.float64)
    return value if value.size and np.all(np.isfinite(value)) else None
