"""Loading plugins and collecting what they contribute, each object stamped with its plugin.

One broken plugin never takes the tool down: a plugin that fails to import, or contributes
something invalid, is reported in one warning naming it and the reason, and everything else
keeps working. CONVHUB_STRICT_PLUGINS=1 turns those warnings into errors (for CI and plugin
authors); CONVHUB_DISABLE_PLUGINS=a,b (or `convhub --disable-plugin a`) keeps plugins from
being imported at all.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from convhub import hookspecs
from convhub.errors import PluginError
from convhub.graph import RouteGraph
from convhub.types import Conversion, Format, Runner

ENTRY_POINT_GROUP = "convhub"
BUILTIN_PLUGINS = ("tensorflow", "tflite", "jax", "onnx", "tfjs")  # loaded first: they win name clashes
hookimpl = pluggy.HookimplMarker("convhub")


@dataclass
class PluginInfo:
    name: str
    version: str | None
    formats: list[str] = field(default_factory=list)
    conversions: list[str] = field(default_factory=list)
    runners: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def strict() -> bool:
    return os.environ.get("CONVHUB_STRICT_PLUGINS", "") not in ("", "0")


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get("CONVHUB_DISABLE_PLUGINS", "").split(",") if n.strip()}


def report_problem(message: str, problems: list[str] | None = None) -> None:
    """A plugin problem: an error in strict mode, else one warning on stderr."""
    if strict():
        raise PluginError(message)
    if problems is not None:
        problems.append(message)
    print(f"convhub: warning: {message}", file=sys.stderr)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    order = {name: i for i, name in enumerate(BUILTIN_PLUGINS)}
    return sorted(found, key=lambda ep: (order.get(ep.name, len(order)), ep.name))


def plugin_manager(*, entry_points: bool = True, problems: list[str] | None = None) -> pluggy.PluginManager:
    """A plugin manager with convhub's hook specs and, by default, every installed plugin that
    is not disabled."""
    pm = pluggy.PluginManager("convhub")
    pm.add_hookspecs(hookspecs)
    if not entry_points:
        return pm
    for name in disabled_plugins():
        pm.set_blocked(name)
    for ep in _entry_points():
        if pm.is_blocked(ep.name):
            continue
        if pm.get_plugin(ep.name) is not None:
            report_problem(f"two installed plugins are named {ep.name!r}; the second ({ep.value}) is skipped", problems)
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # noqa: BLE001 - any failure of third-party code
            report_problem(f"plugin {ep.name!r} failed to load and is skipped: {type(exc).__name__}: {exc}", problems)
    return pm


def _plugin_versions() -> dict[str, str | None]:
    """Versions of the distributions behind entry-point plugins, by plugin name."""
    return {ep.name: (ep.dist.version if ep.dist else None) for ep in _entry_points()}


class Registry:
    """Everything the registered plugins contribute, with the plugin behind each object."""

    def __init__(self, pm: pluggy.PluginManager, problems: list[str] | None = None):
        self.plugin_manager = pm
        self.problems: list[str] = problems if problems is not None else []
        versions = _plugin_versions()
        self.plugins: dict[str, PluginInfo] = {
            # In registration order (built-ins first), which decides who keeps a clashing name.
            name: PluginInfo(name, versions.get(name)) for name, plugin in pm.list_name_plugin() if plugin is not None
        }
        self.formats: dict[str, Format] = {}
        self.conversions: list[Conversion] = []
        self.runners: dict[str, list[Runner]] = {}
        contributions = {name: self._contributions(name) for name in self.plugins}
        contributions = {name: c for name, c in contributions.items() if c is not None}
        for plugin, (formats, _, _) in contributions.items():
            for fmt in formats:
                if fmt.name in self.formats:
                    self._problem(f"format {fmt.name!r} is defined by both plugin {self.formats[fmt.name].plugin!r}"
                                  f" and plugin {plugin!r}; {plugin!r}'s is ignored")
                    continue
                self.formats[fmt.name] = fmt
                self.plugins[plugin].formats.append(fmt.name)
        for plugin, (_, conversions, runners) in contributions.items():
            for conv in conversions:
                same = next((c for c in self.conversions if c.name == conv.name), None)
                unknown = [end for end in (conv.source, conv.target) if end not in self.formats]
                if same is not None:
                    self._problem(f"conversion {conv.name!r} is defined by both plugin {same.plugin!r}"
                                  f" and plugin {plugin!r}; {plugin!r}'s is ignored")
                elif unknown:
                    self._problem(f"plugin {plugin!r}: conversion {conv.name!r} uses unknown format {unknown[0]!r}; ignored")
                else:
                    self.conversions.append(conv)
                    self.plugins[plugin].conversions.append(conv.name)
            for runner in runners:
                if runner.format not in self.formats:
                    self._problem(f"plugin {plugin!r}: runner {runner.name!r} runs unknown format {runner.format!r}; ignored")
                    continue
                self.runners.setdefault(runner.format, []).append(runner)
                self.plugins[plugin].runners.append(runner.name)
        self.graph = RouteGraph(self.conversions)

    def _problem(self, message: str) -> None:
        report_problem(message, self.problems)

    def _contributions(self, plugin: str) -> tuple[list[Format], list[Conversion], list[Runner]] | None:
        """All a plugin contributes, stamped with its name; None (and one warning) if any of it is invalid."""
        out: list[list[Any]] = []
        for hook_name, kind in (("convhub_formats", Format), ("convhub_conversions", Conversion), ("convhub_runners", Runner)):
            items: list[Any] = []
            for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name != plugin:
                    continue
                try:
                    returned = list(impl.function() or ())
                except Exception as exc:  # noqa: BLE001 - third-party code
                    self._problem(f"plugin {plugin!r} is skipped: {hook_name}() failed: {type(exc).__name__}: {exc}")
                    return None
                wrong = next((x for x in returned if not isinstance(x, kind)), None)
                if wrong is not None:
                    self._problem(f"plugin {plugin!r} is skipped: {hook_name}() returned a {type(wrong).__name__},"
                                  f" expected {kind.__name__}")
                    return None
                items += [dataclasses.replace(x, plugin=plugin) for x in returned]
            out.append(items)
        formats, conversions, runners = out
        return formats, conversions, runners

    def format(self, name: str) -> Format:
        from convhub.errors import UsageError

        try:
            return self.formats[name]
        except KeyError:
            known = ", ".join(sorted(self.formats)) or "none"
            raise UsageError(f"unknown format {name!r} (known: {known})") from None

    def runner(self, fmt: str) -> Runner | None:
        """The first runner for a format whose modules are installed."""
        from convhub.graph import missing_modules

        for runner in self.runners.get(fmt, []):
            if not missing_modules(runner.requires):
                return runner
        return None


def build_registry(plugins: Iterable[tuple[str, object]] = (), *, entry_points: bool = True) -> Registry:
    """A registry of the installed plugins plus `plugins` ((name, plugin object) pairs)."""
    problems: list[str] = []
    pm = plugin_manager(entry_points=entry_points, problems=problems)
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    return Registry(pm, problems)


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of all installed plugins, built once per process."""
    return build_registry()
