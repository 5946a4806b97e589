"""The results store: one DuckDB file with every run, epoch and prediction (`Store`), the folders
beside it (runs/ checkpoints, the adapted/ and tokenized/ caches), and the one place SQL lives."""

from runner.store.store import Store

__all__ = ["Store"]
