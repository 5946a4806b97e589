"""runner: a declarative experiment-spec runner for fine-tuning text classifiers."""

from .errors import (
    DataError,
    InputError,
    ModelLoadError,
    OptionError,
    PluginError,
    RunnerError,
    SpecError,
    StoreError,
    TrainingError,
)
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "InputError",
    "ModelLoadError",
    "OptionError",
    "PluginError",
    "RunnerError",
    "SpecError",
    "StoreError",
    "TrainingError",
    "hookimpl",
    "__version__",
]
