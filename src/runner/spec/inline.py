"""A spec given in Python (a dict, or a `runner.Spec`) rather than as a file.

`InlineSpec` is the path every step of `apply` takes (relative data paths and a `plugins/` folder
are looked for in the working directory, as for a spec file there), carrying the document itself:
`read_toml` reads the document instead of a file, and a SpecError names the key path of each problem
without a file name.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.spec.models import Spec

INLINE_NAME = "<spec>"


class InlineSpec(type(Path())):
    """`InlineSpec(document)`: a path in the working directory that holds `document` (its `inline`)."""

    def __new__(cls, document: dict[str, Any] | None = None, base: Path | None = None):
        self = super().__new__(cls, Path(base or Path.cwd()).resolve() / INLINE_NAME)
        self.document = document
        return self

    @property
    def inline(self) -> bool:
        """Whether this path holds a document (paths derived from it, `.parent`, do not)."""
        return getattr(self, "document", None) is not None


def spec_source(spec) -> Path:
    """The path `plan` reads: a file's own path, or an InlineSpec for a dict or a `runner.Spec`."""
    if isinstance(spec, Spec):
        return InlineSpec(spec.model_dump(mode="json", exclude_unset=True))
    if isinstance(spec, dict):
        return InlineSpec(copy.deepcopy(spec))
    if isinstance(spec, (str, Path)):
        return Path(spec)
    raise InputError(f"spec: {type(spec).__name__} is not a spec; give a spec file's path, a dict of its tables "
                     "or a runner.Spec")
