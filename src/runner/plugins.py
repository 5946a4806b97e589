"""Plugin discovery and the registry of named components.

Plugins are found in three places, in this order: the built-ins (themselves ordinary plugins), the
`runner` entry-point group of installed packages, and the `*.py` files of a plugins directory. Each
registration hook is called once per plugin with a `register` callback bound to that plugin, so every
name in the registry knows where it came from, and a duplicate name is an error that names both.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import PluginError

KINDS = ("backbones", "losses", "datasets", "metrics")
SINGULAR = {"backbones": "backbone", "losses": "loss", "datasets": "dataset", "metrics": "metric"}

BUILTIN_MODULES = (
    "runner.builtins.backbones",
    "runner.builtins.losses",
    "runner.builtins.datasets",
    "runner.builtins.metrics",
)


@dataclass
class Component:
    """A registered backbone, loss, dataset loader or metric."""

    kind: str
    name: str
    obj: Callable[..., Any]
    origin: str
    options: type | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Everything the loaded plugins registered, and the plugin manager for event hooks."""

    def __init__(self, pm: pluggy.PluginManager, origins: dict[str, str]):
        self.pm = pm
        self.origins = origins  # plugin name -> where it came from
        self.components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}

    def get(self, kind: str, name: str) -> Component | None:
        return self.components[kind].get(name)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    @property
    def hook(self):
        return self.pm.hook

    def _collect(self) -> None:
        for kind in KINDS:
            caller = getattr(self.pm.hook, f"register_{kind}")
            for impl in caller.get_hookimpls():
                origin = self.origins.get(impl.plugin_name, impl.plugin_name)
                register = self._register_for(kind, origin)
                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as e:  # a plugin's own bug, reported against its file
                    raise PluginError(
                        f"plugin {origin}: register_{kind} raised {type(e).__name__}: {e}"
                    ) from e

    def _register_for(self, kind: str, origin: str):
        def register(name: str, obj: Callable[..., Any], options: type | None = None, **extra: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {origin}: register_{kind} was given a name that is not a string")
            if not callable(obj):
                raise PluginError(f"plugin {origin}: {SINGULAR[kind]} {name!r} is not callable")
            if options is not None and not hasattr(options, "model_validate"):
                raise PluginError(
                    f"plugin {origin}: options for {SINGULAR[kind]} {name!r} must be a pydantic model class"
                )
            existing = self.components[kind].get(name)
            if existing is not None:
                raise PluginError(
                    f"{SINGULAR[kind]} {name!r} is registered twice: by {existing.origin} and by {origin}. "
                    "Rename one of them."
                )
            self.components[kind][name] = Component(kind, name, obj, origin, options, extra)

        return register


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("runner")
    pm.add_hookspecs(hookspecs)
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, origin: str, origins: dict[str, str]) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as e:
        raise PluginError(f"plugin {origin}: {_signature_message(pm, e)}") from e
    except ValueError as e:  # pluggy: name already registered
        raise PluginError(f"plugin {origin}: {e}") from e
    origins[name] = origin


def _signature_message(pm: pluggy.PluginManager, e: pluggy.PluginValidationError) -> str:
    """pluggy's multi-line message as one line, with the signature the hook expects."""
    import re

    text = str(e)
    hook = re.search(r"for hook '(\w+)'", text)
    impl = re.search(r"hookimpl definition: (.*)", text)
    caller = getattr(pm.hook, hook.group(1), None) if hook else None
    spec = getattr(caller, "spec", None)
    if not (hook and impl and spec is not None):
        return " ".join(line.strip() for line in text.splitlines() if line.strip())
    why = " ".join(line.strip() for line in text.splitlines()[2:] if line.strip())
    expected = f"{hook.group(1)}({', '.join(spec.argnames)})"
    return f"{impl.group(1).strip()} does not match the hook {expected}: {why}"


def _load_file(path: Path) -> Any:
    module_name = f"runner_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a module up by name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin {path}: syntax error on line {e.lineno}: {e.msg}") from e
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin {path}: failed to import: {type(e).__name__}: {e}") from e
    return module


def entry_points():
    """The installed `runner` entry points (a function so tests can see what is installed)."""
    return importlib.metadata.entry_points(group="runner")


def load_registry(plugins_dir: Path | None = None) -> Registry:
    """Load built-ins, entry-point plugins and `plugins_dir/*.py`, and collect their registrations."""
    pm = _new_manager()
    origins: dict[str, str] = {}
    for mod_name in BUILTIN_MODULES:
        _register(pm, importlib.import_module(mod_name), mod_name, "builtin", origins)
    for ep in entry_points():
        origin = f"entry point {ep.name} ({ep.value})"
        try:
            plugin = ep.load()
        except Exception as e:
            raise PluginError(f"plugin {origin}: failed to import: {type(e).__name__}: {e}") from e
        _register(pm, plugin, f"entrypoint:{ep.name}", origin, origins)
    if plugins_dir is not None and plugins_dir.is_dir():
        for path in sorted(plugins_dir.glob("*.py")):
            if path.name.startswith("_"):
                continue
            _register(pm, _load_file(path), f"file:{path.resolve()}", str(path), origins)
    _check_hook_names(pm, origins)
    registry = Registry(pm, origins)
    registry._collect()
    return registry


def _check_hook_names(pm: pluggy.PluginManager, origins: dict[str, str]) -> None:
    """A `@hookimpl` whose name is no hook (`register_loss` for `register_losses`) would never be
    called; say so instead of letting the plugin register nothing."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        name = pm.get_name(e.plugin)
        origin = origins.get(name, name)
        hooks = ", ".join(sorted(h.name for h in pm.hook.__dict__.values() if hasattr(h, "get_hookimpls")
                                 and h.spec is not None))
        raise PluginError(
            f"plugin {origin}: {e}. The hooks are: {hooks} (mark a hook of another runner version with "
            "@hookimpl(optionalhook=True))"
        ) from e


def default_plugins_dir(spec_path: Path | None) -> Path | None:
    """`plugins/` beside the spec; for a spec kept in a `specs/` folder, `plugins/` beside that folder."""
    if spec_path is None:
        candidates = [Path.cwd() / "plugins"]
    else:
        base = spec_path.resolve().parent
        candidates = [base / "plugins", base.parent / "plugins"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None
