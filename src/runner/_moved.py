"""Import paths from before runner's modules moved into subpackages, kept working with a warning.

`import runner.tokenization` (say, in a plugin written for an older runner) gets the module at its
new home, `runner.data.tokenization`, and a DeprecationWarning that names it. Nothing is imported
until an old name is asked for. Only modules a plugin or a user's script may import are listed;
`runner.plugins`, `runner.store`, `runner.spec`, `runner.data` and `runner.errors` kept their names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "runner.tokenization": "runner.data.tokenization",
    "runner.synthetic": "runner.data.synthetic",
    "runner.labels": "runner.data.labels",
    "runner.backbones": "runner.train.backbones",
    "runner.losses": "runner.train.losses",
    "runner.hookspecs": "runner.plugins.hookspecs",
    "runner.components": "runner.plugins.components",
    "runner.records": "runner.core.records",
    "runner.selection": "runner.core.selection",
    "runner.stats": "runner.analysis.stats",
    "runner.calibration": "runner.posthoc.calibration",
    "runner.export": "runner.use.export",
    "runner.predict": "runner.use.predict",
    "runner.ensemble": "runner.posthoc.ensemble",
}


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old name will be removed)",
                      DeprecationWarning, stacklevel=2)  # the importing line (warnings skips importlib's frames)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        pass  # the module at its new home is already executed


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
