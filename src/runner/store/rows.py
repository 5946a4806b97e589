"""Rows in and out of DuckDB through Arrow: a batch inserted by column name, a query's result as an
Arrow table, prediction rows built without a Python loop, and a checkpoint's rows replaced in one go.
Every write module of the store uses these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa


def insert(con, table: str, batch: pa.Table) -> None:
    """Insert an Arrow batch by column name (columns added by later migrations sit at the end)."""
    name = f"batch_{table}"
    con.register(name, batch)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {name}")
    finally:
        con.unregister(name)


def replace_checkpoint(con, run_id: str, kind: str, member: str, checkpoint: str, epoch: int | None,
                        metrics: Sequence[tuple[str, str, float]],
                        predictions: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> int:
    metric_batch = pa.table({
        "run_id": pa.array([run_id] * len(metrics), pa.string()),
        "kind": pa.array([kind] * len(metrics), pa.string()),
        "member": pa.array([member] * len(metrics), pa.string()),
        "checkpoint": pa.array([checkpoint] * len(metrics), pa.string()),
        "epoch": pa.array([epoch] * len(metrics), pa.int32()),
        "split": pa.array([m[0] for m in metrics], pa.string()),
        "name": pa.array([m[1] for m in metrics], pa.string()),
        "value": pa.array([float(m[2]) for m in metrics], pa.float64()),
    })
    pred_batches = [prediction_batch(run_id, member, checkpoint, epoch, split, idx, probs, kind)
                    for split, idx, probs in predictions]
    key = "run_id = ? AND kind = ? AND member = ? AND checkpoint = ?"
    params = [run_id, kind, member, checkpoint]
    # what there is to replace, in one statement: a new checkpoint (the usual case) needs no delete.
    # Calibrations go too: they were fitted on the predictions being replaced (runner.posthoc.calibrate)
    found = con.execute(f"SELECT (SELECT count(*) FROM metrics WHERE {key}), (SELECT count(*) FROM calibrations "
                        f"WHERE {key}), (SELECT count(*) FROM checkpoints WHERE {key})", params * 3).fetchall()[0]
    for table, n in zip(("metrics", "calibrations"), found):
        if n:
            con.execute(f"DELETE FROM {table} WHERE {key}", params)
    if found[2]:
        delete_predictions(con, key, params)
    insert(con, "metrics", metric_batch)
    insert_predictions(con, pred_batches)
    return len(metrics) + sum(b.num_rows for b in pred_batches)


def arrow_result(con, sql: str, params: list | None = None) -> pa.Table:
    """A query's result as an Arrow table, without the extra copy a DB-API cursor makes."""
    rel = con.sql(sql, params=params or None)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()


# -- predictions: a `checkpoints` row per (run, kind, member, checkpoint, epoch, split) with a small
# integer key, and the rows in `predictions_<k>` (ckpt, idx, pred, probs FLOAT[k]), one table per class
# count; the `predictions` view joins them back into the old table's columns (migration m012).


def prediction_tables(con) -> list[int]:
    """The class counts that have a `predictions_<k>` table, in order."""
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                       "AND regexp_full_match(table_name, 'predictions_[0-9]+')").fetchall()
    return sorted(int(r[0].removeprefix("predictions_")) for r in rows)


def predictions_view_sql(counts: Sequence[int]) -> str:
    """The `predictions` view over the rows tables of these class counts (probs as FLOAT[], as it always was)."""
    rows = " UNION ALL ".join(f"SELECT ckpt, idx, pred, probs::FLOAT[] AS probs FROM predictions_{k}" for k in counts)
    rows = rows or ("SELECT NULL::INTEGER AS ckpt, NULL::INTEGER AS idx, NULL::SMALLINT AS pred, "
                    "NULL::FLOAT[] AS probs WHERE false")
    return ("CREATE OR REPLACE VIEW predictions AS SELECT c.run_id, c.member, c.checkpoint, c.epoch, c.split, p.idx, "
            f"p.pred, p.probs, c.kind FROM checkpoints c JOIN ({rows}) p ON p.ckpt = c.ckpt")


def _add_rows_table(con, k: int) -> None:
    """`predictions_<k>` and the view over it, unless the table is there (its checkpoints were all deleted)."""
    counts = prediction_tables(con)
    if k in counts:
        return
    con.execute(f"CREATE TABLE predictions_{k} (ckpt INTEGER NOT NULL, idx INTEGER NOT NULL, pred SMALLINT NOT NULL, "
                f"probs FLOAT[{k}] NOT NULL)")
    con.execute(predictions_view_sql(sorted([*counts, k])))


def delete_predictions(con, where: str, params: list) -> int:
    """Delete the predictions of the `checkpoints` rows matching `where` (SQL on its columns), and those
    rows; returns how many checkpoints went. Each rows table is filtered by the keys' range first, so
    DuckDB skips the row groups of every other checkpoint."""
    found = con.execute(f"SELECT num_labels, list(ckpt), min(ckpt), max(ckpt) FROM checkpoints WHERE {where} "
                        "GROUP BY num_labels", params).fetchall()
    for k, keys, low, high in found:
        con.execute(f"DELETE FROM predictions_{int(k)} WHERE ckpt BETWEEN ? AND ? AND list_contains(?, ckpt)",
                    [low, high, keys])
        con.execute("DELETE FROM checkpoints WHERE ckpt BETWEEN ? AND ? AND list_contains(?, ckpt)", [low, high, keys])
    return sum(len(keys) for _, keys, _, _ in found)


@dataclass(frozen=True)
class PredictionRows:
    """Prediction rows ready to insert: the keys of their `checkpoints` row, and an Arrow table of the rest."""

    keys: dict  # run_id, kind, member, checkpoint, epoch, split
    table: pa.Table  # idx, pred, probs (a fixed-size list)
    num_labels: int

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def prediction_batch(run_id: str, member: str, checkpoint: str, epoch: int | None, split: str,
                     idx: np.ndarray, probs: np.ndarray, kind: str = "member") -> PredictionRows:
    """Prediction rows; `probs` becomes a fixed-size FLOAT[k] column without a Python loop (zero-copy
    from a float32 array)."""
    n, k = probs.shape
    probs32 = np.ascontiguousarray(probs, dtype=np.float32)
    return PredictionRows(
        keys={"run_id": run_id, "kind": kind, "member": member, "checkpoint": checkpoint, "epoch": epoch,
              "split": split},
        table=pa.table({
            "idx": pa.array(np.asarray(idx, dtype=np.int32)),
            "pred": pa.array(probs32.argmax(axis=1).astype(np.int16)),
            "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs32.reshape(-1)), k),
        }),
        num_labels=int(k),
    )


def insert_predictions(con, batches: Sequence[PredictionRows]) -> None:
    """A `checkpoints` row for each batch under the next keys, and the rows under them: one INSERT per
    class count, whatever the number of splits (the caller deleted any old rows)."""
    batches = [b for b in batches if b.num_rows]  # as before: a split without rows is no split of the checkpoint
    if not batches:
        return
    top, known = con.execute("SELECT coalesce(max(ckpt), 0), list(DISTINCT num_labels) FROM checkpoints").fetchall()[0]
    for k in sorted({b.num_labels for b in batches} - set(known or [])):
        _add_rows_table(con, k)
    keys = range(top + 1, top + 1 + len(batches))
    con.execute("INSERT INTO checkpoints VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(batches)),
                [v for ckpt, b in zip(keys, batches) for v in (ckpt, b.keys["run_id"], b.keys["kind"], b.keys["member"],
                                                               b.keys["checkpoint"], b.keys["epoch"], b.keys["split"],
                                                               b.num_labels)])
    for k in sorted({b.num_labels for b in batches}):
        same = [(ckpt, b) for ckpt, b in zip(keys, batches) if b.num_labels == k]
        table = pa.concat_tables([b.table for _, b in same])
        ckpts = np.repeat(np.array([c for c, _ in same], dtype=np.int32), [b.num_rows for _, b in same])
        con.register("batch_predictions", table.add_column(0, "ckpt", pa.array(ckpts)))
        try:
            con.execute(f"INSERT INTO predictions_{k} SELECT ckpt, idx, pred, probs FROM batch_predictions")
        finally:
            con.unregister("batch_predictions")
