"""What training stores for each checkpoint: the dataset's examples (once per content hash), each
checkpoint's metrics and predictions (replaced in one transaction), a member's epochs read back,
the strategies' picks (`selections`), and the `epochs` view, a column per split and metric."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa

from runner.core.records import EpochRecord, MemberHistory, metric_key
from runner.core.selection import checkpoint_epoch
from runner.store.rows import arrow_result, delete_predictions, insert, replace_checkpoint

BUILTIN_VIEW_METRICS = ("accuracy", "f1_macro", "log_loss")
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def epochs_view_sql(names: Sequence[str]) -> str:
    """The `epochs` view: one row per member and epoch, a column per split and metric."""
    def col(split: str, name: str, alias: str) -> str:
        return f"max(value) FILTER (WHERE split = '{split}' AND name = '{name}') AS \"{alias}\""

    cols = [col("train", "loss", "train_loss"), col("valid", "loss", "eval_loss")]
    cols += [col("valid", n, f"eval_{n}") for n in names]
    cols += [col("test", "loss", "test_loss")] + [col("test", n, f"test_{n}") for n in names]
    return ("CREATE OR REPLACE VIEW epochs AS SELECT run_id, member, epoch, " + ", ".join(cols)
            + " FROM metrics WHERE kind = 'member' AND checkpoint = 'epoch-' || epoch GROUP BY run_id, member, epoch")


class Results:
    """Methods of `Store` (runner.store.store): they use its `transaction`, `query` and `query_dicts`."""

    # -- a member's epochs ----------------------------------------------------------------------

    def stored_epochs(self, run_id: str, member: str) -> list[int]:
        rows = self.query(
            "SELECT DISTINCT epoch FROM metrics WHERE run_id = ? AND kind = 'member' AND member = ? "
            "AND checkpoint = 'epoch-' || epoch ORDER BY epoch",
            [run_id, member],
        )[1]
        return [r[0] for r in rows]

    def member_epochs(self, run_id: str, member: str) -> list[EpochRecord]:
        """Every stored epoch of a member, in order, with all its metrics."""
        rows = self.query(
            "SELECT epoch, split, name, value FROM metrics WHERE run_id = ? AND kind = 'member' AND member = ? "
            "AND checkpoint = 'epoch-' || epoch ORDER BY epoch",
            [run_id, member],
        )[1]
        by_epoch: dict[int, dict[str, float]] = {}
        for epoch, split, name, value in rows:
            by_epoch.setdefault(epoch, {})[metric_key(split, name)] = value
        return [EpochRecord(e, m) for e, m in sorted(by_epoch.items())]

    def member_histories(self, run_ids: list[str]) -> dict[str, dict[str, MemberHistory]]:
        """run_id -> member -> its history (every stored epoch's metrics, whether it has SWA), for many
        runs in two queries (what the strategies pick from, for a sweep's trials)."""
        rows = self.query("SELECT run_id, member, epoch, split, name, value, checkpoint FROM metrics WHERE "
                          "list_contains(?, run_id) AND kind = 'member' AND (checkpoint = 'epoch-' || epoch OR "
                          "checkpoint = 'swa') ORDER BY run_id, member, epoch", [list(run_ids)])[1]
        epochs: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
        swa: set[tuple[str, str]] = set()
        for run_id, member, epoch, split, name, value, checkpoint in rows:
            if checkpoint == "swa":
                swa.add((run_id, member))
            else:
                epochs.setdefault((run_id, member), {}).setdefault(epoch, {})[metric_key(split, name)] = value
        out: dict[str, dict[str, MemberHistory]] = {rid: {} for rid in run_ids}
        for (run_id, member), by_epoch in epochs.items():
            out[run_id][member] = MemberHistory.of(member, [EpochRecord(e, m) for e, m in sorted(by_epoch.items())],
                                                   has_swa=(run_id, member) in swa)
        return out

    def has_checkpoint(self, run_id: str, member: str, checkpoint: str) -> bool:
        return bool(self.query(
            "SELECT count(*) FROM metrics WHERE run_id = ? AND kind = 'member' AND member = ? AND checkpoint = ?",
            [run_id, member, checkpoint])[1][0][0])

    def epoch_counts(self, run_id: str) -> dict[str, int]:
        """member -> the number of its last stored epoch."""
        return dict(self.query("SELECT member, max(epoch) FROM metrics WHERE run_id = ? AND kind = 'member' "
                               "GROUP BY member", [run_id])[1])

    def truncate_member(self, run_id: str, member: str, last_epoch: int) -> None:
        """Before a member resumes after `last_epoch`: drop its rows of later epochs and of anything
        derived from the epochs (SWA, selections), so each is written exactly once."""
        later = "run_id = ? AND kind = 'member' AND member = ? AND (epoch > ? OR checkpoint NOT LIKE 'epoch-%')"
        with self.transaction() as con:
            con.execute(f"DELETE FROM metrics WHERE {later}", [run_id, member, last_epoch])
            delete_predictions(con, later, [run_id, member, last_epoch])
            con.execute("DELETE FROM selections WHERE run_id = ? AND member = ?", [run_id, member])

    # -- examples, metrics, predictions -------------------------------------------------------

    def put_examples(self, dataset_id: str, splits: dict[str, Any]) -> int:
        """Store a dataset's examples once per content hash; returns rows written (0 if present)."""
        with self.transaction() as con:
            have = con.execute("SELECT count(*) FROM examples WHERE dataset_id = ?", [dataset_id]).fetchall()[0][0]
            if have:
                return 0
            n = 0
            for split, s in splits.items():
                labels = s.labels.astype(np.int32) if s.labels is not None else pa.nulls(len(s), pa.int32())
                batch = pa.table({
                    "dataset_id": pa.array([dataset_id] * len(s), pa.string()),
                    "split": pa.array([split] * len(s), pa.string()),
                    "idx": pa.array(np.arange(len(s), dtype=np.int32)),
                    "text": pa.array(s.texts, pa.string()),
                    "label": labels if isinstance(labels, pa.Array) else pa.array(labels),
                })
                insert(con, "examples", batch)
                n += len(s)
            return n

    def log_checkpoint(self, run_id: str, member: str, checkpoint: str, epoch: int | None,
                       metrics: Sequence[tuple[str, str, float]],
                       predictions: Sequence[tuple[str, np.ndarray, np.ndarray]], kind: str = "member") -> int:
        """Replace a checkpoint's metrics and predictions in one transaction; returns rows written.

        `metrics` is (split, name, value); `predictions` is (split, idx, probs (n, num_labels)).
        Deleting first makes a re-run after a crash idempotent: no row is ever duplicated.
        """
        with self.transaction() as con:
            return replace_checkpoint(con, run_id, kind, member, checkpoint, epoch, metrics, predictions)

    def log_selections(self, run_id: str, member: str, picks: dict[str, str | None]) -> None:
        """Replace the member's rows for these strategies; a strategy that picked nothing gets no row."""
        rows = [[run_id, member, s, c, checkpoint_epoch(c)] for s, c in picks.items() if c is not None]
        with self.transaction() as con:
            con.execute("DELETE FROM selections WHERE run_id = ? AND member = ? AND list_contains(?, strategy)",
                        [run_id, member, list(picks)])
            if rows:
                con.executemany("INSERT INTO selections (run_id, member, strategy, checkpoint, epoch) "
                                "VALUES (?, ?, ?, ?, ?)", rows)

    def refresh_views(self, metric_names: Sequence[str]) -> None:
        """(Re)create the `epochs` view with a column per split for every metric: the built-ins, the
        ones given (the registered metrics) and any stored, so a plugin metric gets its columns."""
        stored = [r[0] for r in self.query("SELECT DISTINCT name FROM metrics WHERE kind = 'member'")[1]]
        names = sorted(set(BUILTIN_VIEW_METRICS) | set(metric_names) | set(stored) - {"loss"})
        names = [n for n in names if IDENTIFIER.match(n)]
        columns = ["run_id", "member", "epoch", "train_loss", "eval_loss", *[f"eval_{n}" for n in names],
                   "test_loss", *[f"test_{n}" for n in names]]
        have = [r[0] for r in self.query(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND table_name = 'epochs' ORDER BY column_index")[1]]
        if have == columns:
            return
        with self.transaction() as con:
            con.execute(epochs_view_sql(names))

    # -- reading ------------------------------------------------------------------------------

    def selections(self, run_id: str, strategy: str) -> dict[str, str]:
        return dict(self.query("SELECT member, checkpoint FROM selections WHERE run_id = ? AND strategy = ?",
                               [run_id, strategy])[1])

    def all_selections(self, run_id: str) -> dict[str, dict[str, str]]:
        """strategy -> member -> checkpoint, for every strategy stored for the run."""
        out: dict[str, dict[str, str]] = {}
        for member, strategy, checkpoint in self.query(
                "SELECT member, strategy, checkpoint FROM selections WHERE run_id = ?", [run_id])[1]:
            out.setdefault(strategy, {})[member] = checkpoint
        return out

    def selections_of(self, run_ids: list[str]) -> dict[str, dict[str, dict[str, str]]]:
        """run_id -> `all_selections(run_id)`, for many runs in one query."""
        out: dict[str, dict[str, dict[str, str]]] = {rid: {} for rid in run_ids}
        for run_id, member, strategy, checkpoint in self.query(
                "SELECT run_id, member, strategy, checkpoint FROM selections WHERE list_contains(?, run_id)",
                [list(run_ids)])[1]:
            out[run_id].setdefault(strategy, {})[member] = checkpoint
        return out

    def selection_strategies(self, run_id: str) -> dict[str, set[str]]:
        """member -> the strategies it has rows for."""
        out: dict[str, set[str]] = {}
        for member, strategy in self.query("SELECT member, strategy FROM selections WHERE run_id = ?", [run_id])[1]:
            out.setdefault(member, set()).add(strategy)
        return out

    def checkpoint_metrics(self, run_id: str) -> dict[tuple[str, str, str], dict[str, float]]:
        """(kind, member, checkpoint) -> {"eval_accuracy": ..., "test_log_loss": ...} for a whole run."""
        out: dict[tuple[str, str, str], dict[str, float]] = {}
        for kind, member, checkpoint, split, name, value in self.query(
            "SELECT kind, member, checkpoint, split, name, value FROM metrics WHERE run_id = ?", [run_id]
        )[1]:
            out.setdefault((kind, member, checkpoint), {})[metric_key(split, name)] = value
        return out

    def metric_names(self, run_id: str) -> set[str]:
        """The names of the metrics stored for a run's members (not calibrate's `<metric>@<method>` rows)."""
        return {r[0] for r in self.query("SELECT DISTINCT name FROM metrics WHERE run_id = ? AND kind = 'member' "
                                         "AND name NOT LIKE '%@%'", [run_id])[1]}

    def label_counts(self, dataset_id: str) -> dict[str, list[int]]:
        """split -> examples per label id, for the splits that have labels."""
        rows = self.query("SELECT split, label, count(*) FROM examples WHERE dataset_id = ? AND label IS NOT NULL "
                          "GROUP BY ALL", [dataset_id])[1]
        k = 1 + max((label for _, label, _ in rows), default=-1)
        out: dict[str, list[int]] = {}
        for split, label, c in rows:
            out.setdefault(split, [0] * k)[label] = c
        return out

    def prediction_counts(self, run_id: str, split: str, num_labels: int) -> dict[tuple[str, str, str], list[int]]:
        """(kind, member, checkpoint) -> how often each label was predicted on `split`: one aggregate over
        the run's stretch of its rows table, by checkpoint key."""
        out: dict[tuple[str, str, str], list[int]] = {}
        with self.connect(write=False) as con:
            keys = con.execute("SELECT ckpt, num_labels, kind, member, checkpoint FROM checkpoints WHERE run_id = ? "
                               "AND split = ?", [run_id, split]).fetchall()
            for k in sorted({r[1] for r in keys}):
                named = {r[0]: (r[2], r[3], r[4]) for r in keys if r[1] == k}
                ids = sorted(named)
                for ckpt, pred, c in con.execute(
                        f"SELECT ckpt, pred, count(*) FROM predictions_{k} WHERE ckpt BETWEEN ? AND ? AND "
                        "list_contains(?, ckpt) GROUP BY ALL", [ids[0], ids[-1], ids]).fetchall():
                    out.setdefault(named[ckpt], [0] * num_labels)[pred] += c
        return out

    def prediction_splits(self, run_id: str) -> set[str]:
        """The splits a run has stored predictions on (valid, test, `runner predict`'s input-<hash>)."""
        return {r[0] for r in self.query("SELECT DISTINCT split FROM checkpoints WHERE run_id = ?", [run_id])[1]}

    def checkpoint_value(self, run_id: str, kind: str, member: str, checkpoint: str, split: str,
                         name: str) -> float | None:
        """One stored metric of one checkpoint (or ensemble), or None."""
        rows = self.query("SELECT value FROM metrics WHERE run_id = ? AND kind = ? AND member = ? AND checkpoint = ? "
                          "AND split = ? AND name = ?", [run_id, kind, member, checkpoint, split, name])[1]
        return rows[0][0] if rows else None

    def epoch_rows(self, run_id: str) -> list[dict]:
        """The run's rows of the `epochs` view, by member and epoch."""
        return self.query_dicts("SELECT * FROM epochs WHERE run_id = ? ORDER BY member, epoch", [run_id])

    def split_label_counts(self, dataset_id: str, split: str) -> dict[int, int]:
        """label id -> examples of `split` with that label (labelled examples only)."""
        return dict(self.query("SELECT label, count(*) FROM examples WHERE dataset_id = ? AND split = ? "
                               "AND label IS NOT NULL GROUP BY label", [dataset_id, split])[1])

    def example_counts(self, dataset_id: str, split: str) -> tuple[int, int]:
        """(examples, labelled examples) of a dataset's split."""
        total, labelled = self.query("SELECT count(*), count(label) FROM examples WHERE dataset_id = ? AND split = ?",
                                     [dataset_id, split])[1][0]
        return int(total), int(labelled)

    def split_labels(self, dataset_id: str, split: str) -> dict[int, int | None]:
        """example idx -> label id (None where it has none) of a dataset's split."""
        return dict(self.query("SELECT idx, label FROM examples WHERE dataset_id = ? AND split = ? ORDER BY idx",
                               [dataset_id, split])[1])

    def examples_of(self, dataset_id: str, splits: Sequence[str]) -> list[tuple[str, int, str, int | None]]:
        """(split, idx, text, label) of a dataset's examples in `splits`, by split and idx."""
        return self.query("SELECT split, idx, text, label FROM examples WHERE dataset_id = ? AND list_contains(?, split) "
                          "ORDER BY split, idx", [dataset_id, list(splits)])[1]

    def prediction_count(self, run_id: str, kind: str, member: str, checkpoint: str, split: str) -> int:
        """How many predictions a checkpoint (or ensemble) has stored for a split."""
        return self.query("SELECT count(*) FROM predictions WHERE run_id = ? AND kind = ? AND member = ? "
                          "AND checkpoint = ? AND split = ?", [run_id, kind, member, checkpoint, split])[1][0][0]

    def predicted_counts(self, run_id: str, kind: str, member: str, checkpoint: str, split: str) -> dict[int, int]:
        """label id -> how often a checkpoint (or ensemble) predicted it on a split."""
        return dict(self.query("SELECT pred, count(*) FROM predictions WHERE run_id = ? AND kind = ? AND member = ? "
                               "AND checkpoint = ? AND split = ? GROUP BY pred", [run_id, kind, member, checkpoint,
                                                                                  split])[1])

    @contextmanager
    def probabilities(self) -> Iterator[ProbabilityReader]:
        """A reader of stored probabilities over one read-only connection (for many reads at once)."""
        with self.connect(write=False) as con:
            yield ProbabilityReader(con)


class ProbabilityReader:
    """Stored probabilities as numpy arrays, read through Arrow over one connection
    (`Store.probabilities()`). A run's `checkpoints` rows are read once per reader; then each
    checkpoint's rows are found by their integer key, many checkpoints in one query (`many`): the rows of
    a checkpoint are one stretch of its `predictions_<k>` table, so DuckDB's zone maps on `ckpt` skip
    every row group of the others, and the fixed-size arrays come back as one (rows, K) block."""

    GAP = 256  # keys further apart than this are read by separate queries (each a narrow range)

    def __init__(self, con):
        self.con = con
        self._keys: dict[str, dict[tuple[str, str, str, str], tuple[int, int]]] = {}

    def keys(self, run_id: str) -> dict[tuple[str, str, str, str], tuple[int, int]]:
        """(kind, member, checkpoint, split) -> (ckpt, num_labels) of every checkpoint the run has stored."""
        if run_id not in self._keys:
            rows = self.con.execute("SELECT kind, member, checkpoint, split, ckpt, num_labels FROM checkpoints "
                                    "WHERE run_id = ? ORDER BY ckpt", [run_id]).fetchall()
            self._keys[run_id] = {(kd, m, c, sp): (ck, k) for kd, m, c, sp, ck, k in rows}
        return self._keys[run_id]

    def key(self, run_id: str, kind: str, member: str, checkpoint: str, split: str) -> tuple[int, int] | None:
        """(ckpt, num_labels) of a checkpoint's predictions on a split (its `checkpoints` row), or None."""
        return self.keys(run_id).get((kind, member, checkpoint, split))

    def checkpoint(self, run_id: str, kind: str, member: str, checkpoint: str,
                   split: str) -> tuple[np.ndarray, np.ndarray]:
        """(idx (n,), probs (n, K) float32) of a checkpoint's predictions on a split, sorted by idx."""
        return self.many(run_id, kind, [(member, checkpoint, split)])[(member, checkpoint, split)]

    def many(self, run_id: str, kind: str, wanted: Sequence[tuple[str, str, str]]
             ) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]:
        """(member, checkpoint, split) -> (idx, probs) for each of `wanted`, sorted by idx; empty arrays
        for one with nothing stored. One query per class count and stretch of nearby keys."""
        out: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}
        by_k: dict[int, dict[int, tuple[str, str, str]]] = {}
        for w in wanted:
            found = self.key(run_id, kind, *w)
            if found is None:
                out[w] = (np.zeros(0, np.int32), np.zeros((0, 0), np.float32))
            else:
                by_k.setdefault(found[1], {})[found[0]] = w
        for k, named in by_k.items():
            ids = sorted(named)
            cuts = [0] + [i + 1 for i in range(len(ids) - 1) if ids[i + 1] - ids[i] > self.GAP] + [len(ids)]
            for a, b in zip(cuts, cuts[1:]):
                self._read_range(k, ids[a:b], named, out)
        return out

    def _read_range(self, k: int, ids: list[int], named: dict, out: dict) -> None:
        table = arrow_result(self.con, f"SELECT ckpt, idx, probs FROM predictions_{k} WHERE ckpt BETWEEN ? AND ? "
                                       "AND list_contains(?, ckpt)", [ids[0], ids[-1], ids])
        ckpt = table.column("ckpt").to_numpy()
        idx = table.column("idx").to_numpy()
        probs = probability_block(table.column("probs"), k)
        if np.any(ckpt[1:] < ckpt[:-1]):  # rows come back in insertion order: by key already
            order = np.argsort(ckpt, kind="stable")
            ckpt, idx, probs = ckpt[order], idx[order], probs[order]
        lo, hi = np.searchsorted(ckpt, ids, "left"), np.searchsorted(ckpt, ids, "right")
        for c, a, b in zip(ids, lo, hi):
            i, p = idx[a:b], probs[a:b]
            if np.any(i[1:] <= i[:-1]):
                order = np.argsort(i, kind="stable")
                i, p = i[order], p[order]
            out[named[c]] = (i, p)

    def labels(self, dataset_id: str, split: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(idx, label ids) of a split's examples by idx; labels None when any example has none."""
        table = arrow_result(self.con, "SELECT idx, label FROM examples WHERE dataset_id = ? AND split = ? ORDER BY idx",
                             [dataset_id, split])
        label = table.column("label")
        labels = label.to_numpy().astype(np.int64) if label.null_count == 0 and table.num_rows else None
        return table.column("idx").to_numpy(), labels

    def labelled(self, dataset_id: str, run_id: str, kind: str, member: str, checkpoint: str,
                 split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(idx, probs (n, K) float32, labels or None when any is missing) of a checkpoint on a split,
        joined with the examples' labels, by idx; n = 0 when nothing was stored."""
        found = self.key(run_id, kind, member, checkpoint, split)
        if found is None:
            return np.zeros(0, np.int32), np.zeros((0, 0), np.float32), None
        ckpt, k = found
        table = arrow_result(
            self.con,
            f"SELECT p.idx, p.probs, e.label FROM predictions_{k} p LEFT JOIN examples e ON e.dataset_id = ? "
            "AND e.split = ? AND e.idx = p.idx WHERE p.ckpt = ? ORDER BY p.idx", [dataset_id, split, ckpt])
        label = table.column("label")
        labels = label.to_numpy().astype(np.int64) if label.null_count == 0 and table.num_rows else None
        return table.column("idx").to_numpy(), probability_block(table.column("probs"), k), labels


def probability_block(column: pa.ChunkedArray, k: int) -> np.ndarray:
    """A FLOAT[k] column as one (rows, k) float32 array: zero-copy for a single chunk."""
    if column.num_chunks == 1:
        return column.chunk(0).flatten().to_numpy().reshape(-1, k)
    return column.combine_chunks().flatten().to_numpy().reshape(-1, k)
