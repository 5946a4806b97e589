"""`runner.open(store)`: a store read from a notebook, as DataFrames.

Every table comes from DuckDB as Arrow (runner.store.frames) and becomes a pandas or polars DataFrame
in one conversion, never row by row: a `probs` column stays a fixed-size list (polars `Array`, pandas
`ArrowDtype`), and `probs_array(frame)` or `.probabilities(...)` gives it as one (rows, classes) numpy
array. Reading never
changes the store (it is opened as the read commands open it), so a notebook can read while `runner
apply` or a script with `runner.hf.StoreCallback` trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from runner.analysis.compare import compare as build_comparison
from runner.analysis.compare import default_strategies
from runner.errors import InputError
from runner.plugins.registry import load_registry
from runner.store import Store
from runner.store.results import probability_block

FRAME_KINDS = ("pandas", "polars")


def probs_array(frame) -> np.ndarray:
    """The `probs` column of a `predictions` frame (pandas or polars) as one (rows, classes) float32 array,
    without a Python object per row."""
    column = frame["probs"]
    arrow = column.to_arrow() if hasattr(column, "to_arrow") else pa.array(column.array)  # polars, pandas
    if isinstance(arrow, pa.Array):
        arrow = pa.chunked_array([arrow])
    return probability_block(arrow, arrow.type.list_size)


class StoreView:
    """A results store, read as DataFrames: `runs()`, `compare(run)`, `epochs(run)`,
    `predictions(run, member=, split=, checkpoint=)`, `probabilities(...)` (numpy) and `confusion(...)`.
    `run` is a run id or name (its latest run), or None for the latest run."""

    def __init__(self, store: str | Path = "results.duckdb", frames: str = "pandas", plugins: str | Path | None = None):
        if frames not in FRAME_KINDS:
            raise InputError(f"frames={frames!r}: one of {', '.join(FRAME_KINDS)}")
        self.path = Path(store)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no store there (runner apply, or a script with runner.hf.StoreCallback, "
                             "makes one)")
        self.store = Store(self.path).open_read()
        self.frames = frames
        self.registry = load_registry(Path(plugins) if plugins is not None else None)

    probs_array = staticmethod(probs_array)  # view.probs_array(view.predictions(...)): (rows, classes) numpy

    def __repr__(self) -> str:
        return f"StoreView({str(self.path)!r}, {len(self.store.run_ids())} runs)"

    def frame(self, table: pa.Table):
        """An Arrow table as this view's kind of DataFrame."""
        if self.frames == "polars":
            try:
                import polars
            except ImportError:
                raise InputError("frames='polars': polars is not installed (pip install polars)") from None
            return polars.from_arrow(table)
        try:
            import pandas
        except ImportError:
            raise InputError("frames='pandas': pandas is not installed (pip install 'runner[notebook]')") from None
        # fixed-size lists (probs) stay Arrow-backed: one buffer, where numpy would make an object per row
        return table.to_pandas(types_mapper=lambda t: pandas.ArrowDtype(t) if pa.types.is_fixed_size_list(t) else None)

    def run_id(self, run: str | None) -> str:
        return self.store.run(run).run_id

    def runs(self):
        return self.frame(self.store.runs_arrow())

    def epochs(self, run: str | None = None):
        """A row per member and epoch, a column per split and metric (the store's `epochs` view)."""
        return self.frame(self.store.epochs_arrow(self.run_id(run)))

    def compare(self, run: str | None = None, strategies: list[str] | None = None, all: bool = False):
        """`runner compare RUN` as a DataFrame: a row per strategy and member (and ensemble), with every number."""
        record = self.store.run(run)
        wanted = strategies or (None if all else default_strategies(record, self.registry))
        records = build_comparison(self.store, record, self.registry, wanted).records()
        keys = list(dict.fromkeys(k for r in records for k in r))
        return self.frame(pa.table({k: [r.get(k) for r in records] for k in keys}))

    def predictions(self, run: str | None = None, member: str | None = None, split: str | None = "test",
                    checkpoint: str | None = "selected"):
        """Each example's prediction (`pred`, `probs`) with its `text` and `label`. `checkpoint`: `selected`
        (each member's), a strategy (`best_eval_loss`, `last`, ...), a checkpoint (`epoch-3`, `swa`) or None
        (every checkpoint). `probs_array(frame)` gives the probabilities as one numpy array."""
        return self.frame(self._predictions(run, member, split, checkpoint))

    def probabilities(self, run: str | None = None, member: str | None = None, split: str = "test",
                      checkpoint: str = "selected") -> np.ndarray:
        """(examples, labels) probabilities of one member's checkpoint on one split, in example order."""
        record = self.store.run(run)
        table = self._predictions(record.run_id, self._one_member(record.run_id, member), split, checkpoint)
        return probability_block(table.column("probs"), record.num_labels)

    def confusion(self, run: str | None = None, member: str | None = None, split: str = "test",
                  checkpoint: str = "selected"):
        """Counts of (true label, predicted label) of one member's checkpoint, labels as names."""
        record = self.store.run(run)
        table = self._predictions(run, self._one_member(run, member), split, checkpoint)
        labels = table.column("label").to_numpy(zero_copy_only=False)
        if table.num_rows and np.isnan(labels.astype(float)).any():
            raise InputError(f"split {split!r} of run {record.run_id} has no labels to count against")
        k = record.num_labels
        counts = np.zeros((k, k), dtype=np.int64)
        np.add.at(counts, (labels.astype(np.int64), table.column("pred").to_numpy().astype(np.int64)), 1)
        names = list(record.label_names)
        return self.frame(pa.table({"label": names, **{n: counts[:, j] for j, n in enumerate(names)}}))

    def _one_member(self, run: str | None, member: str | None) -> str:
        record = self.store.run(run)
        if member is not None:
            if record.member(member) is None:
                raise InputError(f"member={member!r}: run {record.run_id} has members "
                                 f"{', '.join(m.name for m in record.members)}")
            return member
        if len(record.finished) == 1:
            return record.finished[0].name
        raise InputError(f"run {record.run_id} has {len(record.finished)} finished members; name one with member=")

    def _predictions(self, run, member, split, checkpoint) -> pa.Table:
        run_id = self.run_id(run)
        table = self.store.predictions_arrow(run_id, member, split, checkpoint)
        if table.num_rows == 0:
            raise InputError(f"run {run_id}: no predictions of member={member!r}, split={split!r}, "
                             f"checkpoint={checkpoint!r}")
        return table
