"""runner: a declarative experiment-spec runner for fine-tuning text classifiers.

What a plugin or a script imports from the top: `hookimpl`, the errors, `__version__`, and the
entry points `apply`, `validate`, `load` and `open` (runner.api) with `Run` and `Spec`, which load on first use.
"""

from runner import _moved
from runner.errors import (
    DataError,
    DiskFullError,
    InputError,
    ModelLoadError,
    OptionError,
    PluginError,
    RunnerError,
    SpecError,
    StoreError,
    StoreFileError,
    TrainingError,
)
from runner.plugins.hookspecs import hookimpl
from runner.version import __version__

_moved.install()

_ENTRY_POINTS = ("apply", "validate", "load", "open", "Run", "Spec")


def __getattr__(name: str):
    if name in _ENTRY_POINTS:
        # start-up time: `from runner import hookimpl` in a plugin must not load torch, transformers and
        # DuckDB; the entry points (runner.api) load when first asked for
        from runner import api

        return getattr(api, name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")


__all__ = [
    "DataError",
    "DiskFullError",
    "InputError",
    "ModelLoadError",
    "OptionError",
    "Run",
    "PluginError",
    "RunnerError",
    "Spec",
    "SpecError",
    "StoreError",
    "StoreFileError",
    "TrainingError",
    "__version__",
    "apply",
    "hookimpl",
    "load",
    "open",
    "validate",
]
