"""The store's schema, as an append-only list of named migrations.

Each migration runs once, in order, and is recorded in `_migrations`; opening a store written by an
older runner applies the ones it lacks. Never edit a migration that has shipped: add a new one and say
in its docstring why it exists. A store that has a migration this runner does not know was written by
a newer runner and is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Callable

from runner.store.migrations import m001_m004, m005_m008, m009_m012

# in the order they run; a store records each by its function's name
MIGRATIONS: list[Callable] = [*m001_m004.STEPS, *m005_m008.STEPS, *m009_m012.STEPS]
