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
    "__version__",
]
