"""Predictions on new inputs (`runner predict`): the input's examples under its own split
(`input-<hash>`), each checkpoint's predictions of it, and its `inputs` row."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from runner.core.selection import checkpoint_epoch
from runner.store.connection import now
from runner.store.rows import delete_predictions, insert, insert_predictions, prediction_batch


class Inputs:
    """Methods of `Store` (runner.store.store): they use its `transaction`, `query` and `query_dicts`."""

    # -- predictions on new inputs: `runner predict` (runner.data.inputs, runner.use.predict) -----

    def log_input(self, run_id: str, dataset_id: str, split: str, input_hash: str, source: str, texts: Sequence[str],
                  labels: np.ndarray | None, predictions: Sequence[tuple[str, str, str, np.ndarray]], strategy: str,
                  calibrated: bool) -> int:
        """Replace what the run holds for one input file, in one transaction: its examples (under the
        run's `dataset_id`, split `input-<hash>`), its predictions under that split (`predictions` is
        (kind, member, checkpoint, probs) per member checkpoint and for the ensemble, the probabilities as
        the models give them, never calibrated, as in every other split), and its `inputs` row. Predicting the
        same input again with the same checkpoints replaces their rows (never a duplicate row); the rows of
        other strategies' checkpoints stay. Returns rows written."""
        n = len(texts)
        idx = np.arange(n, dtype=np.int32)
        examples = pa.table({
            "dataset_id": pa.array([dataset_id] * n, pa.string()),
            "split": pa.array([split] * n, pa.string()),
            "idx": pa.array(idx),
            "text": pa.array(list(texts), pa.string()),
            "label": pa.array(labels.astype(np.int32)) if labels is not None else pa.nulls(n, pa.int32()),
        })
        batches = [prediction_batch(run_id, member, checkpoint, checkpoint_epoch(checkpoint), split, idx, probs, kind)
                   for kind, member, checkpoint, probs in predictions]
        with self.transaction() as con:
            con.execute("DELETE FROM examples WHERE dataset_id = ? AND split = ?", [dataset_id, split])
            insert(con, "examples", examples)
            for kind, member, checkpoint, _ in predictions:  # only what this call rewrites: other strategies stay
                delete_predictions(con, "run_id = ? AND split = ? AND kind = ? AND member = ? AND checkpoint = ?",
                                   [run_id, split, kind, member, checkpoint])
            insert_predictions(con, batches)
            con.execute("DELETE FROM inputs WHERE run_id = ? AND split = ? AND strategy = ?", [run_id, split, strategy])
            con.execute("INSERT INTO inputs (run_id, split, input_hash, source, rows, has_labels, strategy, calibrated, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [run_id, split, input_hash, source, n, labels is not None, strategy, calibrated, now()])
        return n + sum(b.num_rows for b in batches) + 1
