"""runner: a declarative experiment-spec runner for fine-tuning text classifiers."""

from .errors import (
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
from .hookspecs import hookimpl

__version__ = "0.1.0"


def load(directory, plugins_dir=None, batch_size: int | None = None, device=None):
    """Load a folder written by `runner export`: an object with `predict_proba(texts)` and
    `predict(texts)` (see runner.export.load). Needs no store and no spec."""
    from .export import load as _load

    return _load(directory, plugins_dir=plugins_dir, batch_size=batch_size, device=device)


__all__ = [
    "DataError",
    "DiskFullError",
    "InputError",
    "ModelLoadError",
    "OptionError",
    "PluginError",
    "RunnerError",
    "SpecError",
    "StoreError",
    "StoreFileError",
    "TrainingError",
    "hookimpl",
    "load",
    "__version__",
]
