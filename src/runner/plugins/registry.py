"""Plugin discovery and the registry of named components.

Plugins are found in exactly these places, in this order:

1. the built-ins (themselves ordinary plugins, `runner.builtins.*`);
2. the `runner` entry-point group of installed packages;
3. the `*.py` files (not starting with `_`) of one plugins directory: `--plugins DIR` when given;
   otherwise `plugins/` beside the spec; otherwise, for a spec kept in a folder named `specs`,
   `plugins/` beside that folder. Nothing else: not the current directory, not any other parent.

Each registration hook is called once per plugin with a `register` callback bound to that plugin, so
every name knows where it came from, and a duplicate name is an error that names both plugins.
`register` takes the capabilities of its kind as real keyword parameters (runner.plugins.components).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import pluggy

from runner.errors import InputError, PluginError
from runner.plugins import hookspecs
from runner.plugins.components import Backbone, Component, Dataset, Loss, Metric, Selection

KINDS = ("backbones", "losses", "datasets", "metrics", "selections")
SINGULAR = {"backbones": "backbone", "losses": "loss", "datasets": "dataset", "metrics": "metric",
            "selections": "selection strategy"}

BUILTIN_MODULES = (
    "runner.builtins.backbones",
    "runner.builtins.losses",
    "runner.builtins.datasets",
    "runner.builtins.metrics",
    "runner.builtins.selections",
)
# Names of backbones, losses and datasets appear in specs; metric and strategy names also become
# SQL column names (`eval_<metric>`) and CLI arguments, so they are plain identifiers.
COMPONENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
# `loss` is the training objective that Trainer computes on every split; `selected` is the strategy
# of the spec's own [selection]. Neither can be registered by a plugin.
RESERVED = {"metrics": {"loss"}, "selections": {"selected"}}
# The training objective, listed with the metrics so that strategies can be derived from it.
OBJECTIVE = Metric(name="loss", plugin="runner", origin="builtin (the training objective, computed by Trainer)",
                   fn=None, greater_is_better=False)


class Registry:
    """Everything the loaded plugins registered, and the plugin manager for event hooks."""

    def __init__(self, pm: pluggy.PluginManager, origins: dict[str, str], plugin_files: list[Path],
                 plugins_dir: Path | None):
        self.pm = pm
        self.origins = origins  # plugin name -> where it came from
        self.plugin_files = plugin_files  # the *.py files loaded from the plugins directory
        self.plugins_dir = plugins_dir
        self.components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}

    # -- lookups ------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> Component | None:
        return self.components[kind].get(name)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def backbone(self, name: str) -> Backbone | None:
        return self.components["backbones"].get(name)  # type: ignore[return-value]

    def loss(self, name: str) -> Loss | None:
        return self.components["losses"].get(name)  # type: ignore[return-value]

    def dataset(self, name: str) -> Dataset | None:
        return self.components["datasets"].get(name)  # type: ignore[return-value]

    def metric(self, name: str) -> Metric | None:
        """A registered metric, or `loss` (the training objective)."""
        return OBJECTIVE if name == "loss" else self.components["metrics"].get(name)  # type: ignore[return-value]

    def selection(self, name: str) -> Selection | None:
        return self.components["selections"].get(name)  # type: ignore[return-value]

    def metric_fns(self) -> dict[str, Callable[..., float]]:
        """name -> fn(probs, labels) of every registered metric, in name order."""
        return {n: c.fn for n, c in sorted(self.components["metrics"].items())}  # type: ignore[attr-defined]

    def selections(self) -> list[Selection]:
        """Every registered strategy, in a stable order: last, swa, then by name."""
        first = {"last": 0, "swa": 1}
        return sorted(self.components["selections"].values(),  # type: ignore[arg-type]
                      key=lambda s: (first.get(s.name, 2), s.name))

    @property
    def hook(self):
        return self.pm.hook

    # -- collection ---------------------------------------------------------------------------

    def _collect(self) -> None:
        for kind in KINDS:
            caller = getattr(self.pm.hook, f"register_{kind}")
            for impl in caller.get_hookimpls():  # in registration order: built-ins first
                origin = self.origins.get(impl.plugin_name, impl.plugin_name)
                args = {"register": self._registrar(kind, impl.plugin_name, origin)}
                if "metrics" in impl.argnames:
                    args["metrics"] = MappingProxyType({"loss": OBJECTIVE, **self.components["metrics"]})
                try:
                    impl.function(**args)
                except PluginError:
                    raise
                except Exception as e:  # a plugin's own bug, reported against its file
                    raise PluginError(f"plugin {origin}: register_{kind} raised {type(e).__name__}: {e}") from e

    def _add(self, kind: str, component: Component) -> None:
        name, origin = component.name, component.origin
        pattern = IDENTIFIER if kind in ("metrics", "selections") else COMPONENT_NAME
        if not isinstance(name, str) or not pattern.match(name):
            rule = ("a letter, then letters, digits or _" if pattern is IDENTIFIER
                    else "a letter or digit, then letters, digits, _ . or -")
            raise PluginError(f"plugin {origin}: register_{kind} was given the name {name!r}; a "
                              f"{SINGULAR[kind]} name is {rule} (at most 100 characters)")
        if name in RESERVED.get(kind, ()):
            raise PluginError(f"plugin {origin}: the {SINGULAR[kind]} name {name!r} is reserved by runner")
        existing = self.components[kind].get(name)
        if existing is not None:
            raise PluginError(f"{SINGULAR[kind]} {name!r} is registered twice: by {existing.origin} and by "
                              f"{origin}. Rename one of them.")
        self.components[kind][name] = component

    def _registrar(self, kind: str, plugin: str, origin: str):
        """The `register` callback a plugin's `register_<kind>` hook receives."""

        def callable_(what: str, name: str, fn) -> None:
            if not callable(fn):
                raise PluginError(f"plugin {origin}: {SINGULAR[kind]} {name!r}: {what} is not callable")

        def options_model(name: str, options) -> None:
            if options is not None and not (isinstance(options, type) and hasattr(options, "model_validate")):
                raise PluginError(f"plugin {origin}: options for {SINGULAR[kind]} {name!r} must be a pydantic "
                                  "model class")

        def register_backbone(name: str, build, *, options: type | None = None, takes_model: bool = False,
                              check: Callable[[str, Any], None] | None = None,
                              adapt: Callable[..., Any] | None = None) -> None:
            callable_("build", name, build)
            options_model(name, options)
            for what, fn in (("check", check), ("adapt", adapt)):
                if fn is not None:
                    callable_(what, name, fn)
            self._add(kind, Backbone(name, plugin, origin, build=build, options=options,
                                     takes_model=bool(takes_model), check=check, adapt=adapt))

        def register_loss(name: str, build, *, options: type | None = None) -> None:
            callable_("build", name, build)
            options_model(name, options)
            self._add(kind, Loss(name, plugin, origin, build=build, options=options))

        def register_dataset(name: str, load, *, options: type | None = None, read_file=None) -> None:
            callable_("load", name, load)
            options_model(name, options)
            self._add(kind, Dataset(name, plugin, origin, load=load, options=options, read_file=read_file))

        def register_metric(name: str, fn, *, greater_is_better: bool = True) -> None:
            callable_("fn", name, fn)
            self._add(kind, Metric(name, plugin, origin, fn=fn, greater_is_better=bool(greater_is_better)))

        def register_selection(name: str, pick, *, description: str = "", metric: str | None = None,
                               greater_is_better: bool | None = None) -> None:
            callable_("pick", name, pick)
            self._add(kind, Selection(name, plugin, origin, pick=pick, description=description, metric=metric,
                                      greater_is_better=greater_is_better))

        return {"backbones": register_backbone, "losses": register_loss, "datasets": register_dataset,
                "metrics": register_metric, "selections": register_selection}[kind]


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


def plugin_files(plugins_dir: Path | None) -> list[Path]:
    """The plugin files of a plugins directory, in the order they are loaded."""
    if plugins_dir is None or not plugins_dir.is_dir():
        return []
    return [p for p in sorted(plugins_dir.glob("*.py")) if not p.name.startswith("_") and p.is_file()]


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
    files = plugin_files(plugins_dir)
    for path in files:
        _register(pm, _load_file(path), f"file:{path.resolve()}", str(path), origins)
    _check_hook_names(pm, origins)
    registry = Registry(pm, origins, files, plugins_dir)
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


def default_plugins_dir(spec_path: Path) -> Path | None:
    """`plugins/` beside the spec; for a spec kept in a folder named `specs`, `plugins/` beside that
    folder. No other place: a spec in a shared folder never runs code from that folder's parent."""
    base = spec_path.resolve().parent
    if (base / "plugins").is_dir():
        return base / "plugins"
    if base.name == "specs" and (base.parent / "plugins").is_dir():
        return base.parent / "plugins"
    return None


def plugins_dir_for(spec_path: Path | None, given: Path | None) -> Path | None:
    """The plugins directory a command uses: `--plugins DIR` if given (it must exist), else the
    spec's default, else none."""
    if given is not None:
        try:
            is_dir = Path(given).is_dir()
        except (OSError, ValueError) as e:  # a path too long for the file system, a NUL byte
            raise InputError(f"--plugins {str(given)[:200]}: not a usable path ({getattr(e, 'strerror', None) or e})"
                             ) from None
        if not is_dir:
            raise InputError(f"--plugins {given}: not a directory")
        return Path(given)
    return default_plugins_dir(spec_path) if spec_path is not None else None


def trained_plugins_dir(recorded: str | None, store_path: Path) -> Path | None:
    """For a command that reads a run (compare, plot, predict...) without --plugins: the plugins folder
    `apply` loaded when it trained the run (by the spec's folder rule, `default_plugins_dir`; the run
    records it), but only when it is `plugins/` of the current folder or of the store's folder, where
    the user runs the command or keeps the store. A folder only the store names is never loaded: a
    store may come from anyone."""
    if not recorded:
        return None
    for folder in (Path.cwd() / "plugins", Path(store_path).resolve().parent / "plugins"):
        try:
            if folder.is_dir() and folder.resolve() == Path(recorded).resolve():
                return folder
        except (OSError, ValueError):
            continue
    return None


def describe_loaded(registry: Registry) -> str | None:
    """One line for the user: which plugin files were loaded (None when there were none)."""
    if not registry.plugin_files:
        return None
    names = ", ".join(p.name for p in registry.plugin_files)
    folder = Path(registry.plugins_dir)
    try:  # the folder as the user would type it: relative to where they are when it is below it
        folder = folder.resolve().relative_to(Path.cwd().resolve())
    except (OSError, ValueError):
        pass
    return f"plugins: loaded {names} from {folder}"
