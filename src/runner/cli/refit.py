"""`runner refit`: retrain a run's members on train+valid for the epochs a strategy chose (issue 9)."""

from __future__ import annotations
