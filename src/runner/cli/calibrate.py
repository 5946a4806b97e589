"""`runner calibrate`: temperature scaling and prior correction from stored probabilities (issue 9)."""

from __future__ import annotations
