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
    # calibrations go too: they were fitted on the predictions being replaced (runner.posthoc.calibrate)
    for table in ("metrics", "predictions", "calibrations"):
        con.execute(f"DELETE FROM {table} WHERE run_id = ? AND kind = ? AND member = ? AND checkpoint = ?",
                    [run_id, kind, member, checkpoint])
    insert(con, "metrics", metric_batch)
    for b in pred_batches:
        insert_predictions(con, b)
    return len(metrics) + sum(b.num_rows for b in pred_batches)


def arrow_result(con, sql: str, params: list | None = None) -> pa.Table:
    """A query's result as an Arrow table, without the extra copy a DB-API cursor makes."""
    rel = con.sql(sql, params=params or None)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()


@dataclass(frozen=True)
class PredictionRows:
    """Prediction rows ready to insert: the columns every row shares, and an Arrow table of the rest."""

    keys: dict  # run_id, kind, member, checkpoint, epoch, split
    table: pa.Table  # idx, pred, probs

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def prediction_batch(run_id: str, member: str, checkpoint: str, epoch: int | None, split: str,
                     idx: np.ndarray, probs: np.ndarray, kind: str = "member") -> PredictionRows:
    """Prediction rows; `probs` becomes a FLOAT[] list column without a Python loop. The columns every
    row shares are bound as parameters of the insert rather than repeated in the Arrow table: that
    halves the cost of building and ingesting a batch."""
    n, k = probs.shape
    probs32 = np.ascontiguousarray(probs, dtype=np.float32)
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return PredictionRows(
        keys={"run_id": run_id, "kind": kind, "member": member, "checkpoint": checkpoint, "epoch": epoch,
              "split": split},
        table=pa.table({
            "idx": pa.array(np.asarray(idx, dtype=np.int32)),
            "pred": pa.array(probs32.argmax(axis=1).astype(np.int16)),
            "probs": pa.ListArray.from_arrays(offsets, pa.array(probs32.reshape(-1))),
        }),
    )


def insert_predictions(con, batch: PredictionRows) -> None:
    k = batch.keys
    con.register("batch_predictions", batch.table)
    try:
        con.execute(
            "INSERT INTO predictions BY NAME SELECT ?::VARCHAR AS run_id, ?::VARCHAR AS kind, ?::VARCHAR AS member, "
            "?::VARCHAR AS checkpoint, ?::INTEGER AS epoch, ?::VARCHAR AS split, idx, pred, probs "
            "FROM batch_predictions",
            [k["run_id"], k["kind"], k["member"], k["checkpoint"], k["epoch"], k["split"]],
        )
    finally:
        con.unregister("batch_predictions")
