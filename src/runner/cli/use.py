"""Commands that take a run out of the store: `runner predict` and `runner export` (issue 9)."""

from __future__ import annotations
