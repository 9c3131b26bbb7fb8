"""The routing graph on its own: pure Python, so these edges are plain data with trivial converters."""

import pytest

from convhub.errors import NoRouteError
from convhub.graph import RouteGraph, missing_modules, module_available
from convhub.types import Conversion


def edge(source, target, cost=1.0, requires=(), refuse=None, plugin="test"):
    c = Conversion(source, target, convert=lambda a, d, o: None, cost=cost, requires=requires, refuse=refuse)
    return c.__class__(**{**c.__dict__, "plugin": plugin})


def test_cheapest_multi_hop_route_wins_over_a_pricier_direct_edge():
    graph = RouteGraph([edge("a", "b"), edge("b", "c"), edge("a", "c", cost=5)])
    best = graph.best("a", "c")
    assert best.formats == ["a", "b", "c"]
    assert best.cost == 2


def test_alternatives_are_listed_cheapest_first():
    graph = RouteGraph([edge("a", "b"), edge("b", "c"), edge("a", "c", cost=5), edge("a", "d"), edge("d", "c", cost=2)])
    assert [r.formats for r in graph.routes("a", "c")] == [["a", "b", "c"], ["a", "d", "c"], ["a", "c"]]


def test_cycles_do_not_loop():
    graph = RouteGraph([edge("a", "b"), edge("b", "a"), edge("b", "c")])
    assert [r.formats for r in graph.routes("a", "c")] == [["a", "b", "c"]]


def test_edges_with_missing_modules_are_pruned_and_explained():
    graph = RouteGraph([edge("a", "b", requires=("no_such_module_for_convhub",)), edge("b", "c"), edge("a", "c", cost=9)])
    assert graph.best("a", "c").formats == ["a", "c"]
    graph = RouteGraph([edge("a", "b", requires=("no_such_module_for_convhub",)), edge("b", "c")])
    with pytest.raises(NoRouteError) as info:
        graph.best("a", "c")
    assert "a → b (test) needs 'no_such_module_for_convhub', not installed" in str(info.value)


def test_refusals_use_the_model_facts_and_say_why():
    refuse = lambda facts: "holds XlaCallModule ops" if facts.get("xla_call_module") else None  # noqa: E731
    graph = RouteGraph([edge("jax", "savedmodel"), edge("savedmodel", "onnx", refuse=refuse),
                        edge("savedmodel", "tflite"), edge("tflite", "onnx", cost=3)])
    assert graph.best("jax", "onnx", {}).formats == ["jax", "savedmodel", "onnx"]
    assert graph.best("jax", "onnx", {"xla_call_module": True}).formats == ["jax", "savedmodel", "tflite", "onnx"]
    # Planning without a model's facts: refusals see only what the hops produce.
    assert graph.best("jax", "onnx").formats == ["jax", "savedmodel", "onnx"]
    graph = RouteGraph([edge("jax", "savedmodel"), edge("savedmodel", "onnx", refuse=refuse)])
    with pytest.raises(NoRouteError) as info:
        graph.best("jax", "onnx", {"xla_call_module": True})
    assert info.value.reasons == ["savedmodel → onnx (test) refuses this model: holds XlaCallModule ops"]


def test_facts_produced_by_a_hop_reach_the_edges_after_it():
    refuse = lambda facts: "holds XlaCallModule ops" if facts.get("xla_call_module") else None  # noqa: E731
    native = Conversion("jax", "savedmodel", convert=lambda a, d, o: None, produces={"xla_call_module": True})
    graph = RouteGraph([native, edge("savedmodel", "onnx", refuse=refuse),
                        edge("savedmodel", "tflite"), edge("tflite", "onnx", cost=3)])
    assert graph.best("jax", "onnx", {}).formats == ["jax", "savedmodel", "tflite", "onnx"]
    # A SavedModel read from disk without such ops goes straight to ONNX.
    assert graph.best("savedmodel", "onnx", {}).formats == ["savedmodel", "onnx"]
    graph = RouteGraph([native, edge("savedmodel", "onnx", refuse=refuse)])
    with pytest.raises(NoRouteError, match="savedmodel → onnx \\(test\\) refuses this model: holds XlaCallModule"):
        graph.best("jax", "onnx", {})


def test_no_edge_at_all_is_said_plainly():
    graph = RouteGraph([edge("a", "b")])
    with pytest.raises(NoRouteError, match="no chain of conversions leads from b to a"):
        graph.best("b", "a")
    with pytest.raises(NoRouteError, match="same format"):
        graph.best("a", "a")


def test_module_availability_does_not_import():
    import sys

    assert module_available("json")
    assert not module_available("no_such_module_for_convhub")
    assert missing_modules(["json", "no_such_module_for_convhub.sub"]) == ["no_such_module_for_convhub.sub"]
    assert module_available("pluggy")
    # A module nothing here imports: found, and still not imported.
    unused = "xdrlib" if "xdrlib" in sys.stdlib_module_names else "this"
    assert unused not in sys.modules
    assert module_available(unused)
    assert unused not in sys.modules


def test_invalid_conversions_are_rejected():
    with pytest.raises(ValueError, match="goes nowhere"):
        Conversion("a", "a", convert=lambda a, d, o: None)
    with pytest.raises(ValueError, match="lower-case"):
        Conversion("A B", "c", convert=lambda a, d, o: None)
    with pytest.raises(ValueError, match="cost"):
        Conversion("a", "b", convert=lambda a, d, o: None, cost=0)
