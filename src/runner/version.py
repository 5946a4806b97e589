"""runner's version, and the versions of the libraries whose behaviour its numbers depend on."""

from __future__ import annotations

import platform
from importlib import metadata

__version__ = "0.1.0"

# What `runner --version` prints and each run records: the engines that train, store and search.
LIBRARIES = ("torch", "transformers", "tokenizers", "duckdb", "pyarrow", "numpy", "optuna", "pydantic")


def versions() -> dict[str, str]:
    """{name: version} of runner, Python and LIBRARIES (installed ones), read from package metadata
    without importing them."""
    out = {"runner": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
