"""Loading plugins and collecting what they contribute, each object stamped with its plugin."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import sys
from dataclasses import dataclass, field

import pluggy

from convhub import hookspecs
from convhub.errors import PluginError
from convhub.graph import RouteGraph
from convhub.types import Conversion, Format, Runner

ENTRY_POINT_GROUP = "convhub"
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


def _warn(message: str) -> None:
    print(f"convhub: warning: {message}", file=sys.stderr)


def plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with convhub's hook specs and, by default, every installed plugin.

    A plugin that fails to import is skipped with a warning naming it, so one broken
    plugin never takes the whole tool down.
    """
    pm = pluggy.PluginManager("convhub")
    pm.add_hookspecs(hookspecs)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any failure of third-party code
                _warn(f"plugin {ep.name!r} failed to load and is skipped: {type(exc).__name__}: {exc}")
                continue
            pm.register(plugin, name=ep.name)
    return pm


def _plugin_versions() -> dict[str, str | None]:
    """Versions of the distributions behind entry-point plugins, by plugin name."""
    return {
        ep.name: (ep.dist.version if ep.dist else None)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    }


class Registry:
    """Everything the registered plugins contribute, with the plugin behind each object."""

    def __init__(self, pm: pluggy.PluginManager):
        self.plugin_manager = pm
        versions = _plugin_versions()
        self.plugins: dict[str, PluginInfo] = {
            name: PluginInfo(name, versions.get(name))
            for name in (pm.get_name(p) for p in pm.get_plugins())
        }
        self.formats: dict[str, Format] = {}
        self.conversions: list[Conversion] = []
        self.runners: dict[str, list[Runner]] = {}
        for plugin, fmt in self._collect("convhub_formats", Format):
            if fmt.name in self.formats:
                raise PluginError(
                    f"format {fmt.name!r} is defined by both plugin {self.formats[fmt.name].plugin!r}"
                    f" and plugin {plugin!r}"
                )
            self.formats[fmt.name] = fmt
            self.plugins[plugin].formats.append(fmt.name)
        for plugin, conv in self._collect("convhub_conversions", Conversion):
            same = [c for c in self.conversions if c.name == conv.name]
            if same:
                raise PluginError(
                    f"conversion {conv.name!r} is defined by both plugin {same[0].plugin!r}"
                    f" and plugin {plugin!r}"
                )
            self.conversions.append(conv)
            self.plugins[plugin].conversions.append(conv.name)
        for plugin, runner in self._collect("convhub_runners", Runner):
            self.runners.setdefault(runner.format, []).append(runner)
            self.plugins[plugin].runners.append(runner.name)
        for conv in self.conversions:
            for end in (conv.source, conv.target):
                if end not in self.formats:
                    raise PluginError(
                        f"plugin {conv.plugin!r}: conversion {conv.name!r} uses unknown format {end!r}"
                    )
        self.graph = RouteGraph(self.conversions)

    def _collect(self, hook_name: str, kind: type):
        """Call each implementation of a hook on its own, so every result knows its plugin."""
        for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            try:
                items = list(impl.function() or ())
            except Exception as exc:  # noqa: BLE001
                raise PluginError(f"plugin {plugin!r}: {hook_name}() failed: {exc}") from exc
            for item in items:
                if not isinstance(item, kind):
                    raise PluginError(
                        f"plugin {plugin!r}: {hook_name}() returned a {type(item).__name__},"
                        f" expected {kind.__name__}"
                    )
                yield plugin, dataclasses.replace(item, plugin=plugin)

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


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of all installed plugins, built once per process."""
    return Registry(plugin_manager())
