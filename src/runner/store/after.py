"""The store's writes of what follows training: refit runs, replicas (`repeats`), sweeps and trials,
calibrations, and predictions on new inputs. A mixin of `runner.store.store.Store`, which owns every
statement that writes; these sections live here to keep store.py to the training run itself.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pyarrow as pa

from runner.store.connection import now
from runner.core.selection import checkpoint_epoch


class AfterTrainingWrites:
    """Methods of `Store` (they use its `transaction`, `query` and `query_dicts`)."""

    # -- refits (issue 9): a run retrained on train+valid, linked to its parent ---------------------

    def create_refit_run(self, run_id: str, name: str, spec: dict, spec_hash: str, dataset_id: str,
                         label_names: list[str], parent_run_id: str, strategy: str) -> None:
        """A refit run, created with its link to the parent in the same transaction."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO runs (run_id, name, spec, spec_hash, dataset_id, status, started_at, label_names, "
                "parent_run_id, refit_strategy) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                [run_id, name, json.dumps(spec), spec_hash, dataset_id, now(), json.dumps(label_names),
                 parent_run_id, strategy],
            )

    def refit_runs(self, parent_run_id: str) -> list[dict]:
        """The refits of a run (run_id, refit_strategy, status), oldest first."""
        return self.query_dicts("SELECT run_id, refit_strategy, status FROM runs WHERE parent_run_id = ? "
                                "ORDER BY started_at, run_id", [parent_run_id])

    # -- repeats (issue 10): replicas of a spec over member seeds -------------------------------------

    def set_repeat(self, run_id: str, group: str, index: int) -> None:
        """Mark a run as replica `index` of `group` (runs.repeat_group / repeat_index)."""
        with self.transaction() as con:
            con.execute("UPDATE runs SET repeat_group = ?, repeat_index = ? WHERE run_id = ?", [group, index, run_id])

    def replicas(self, run_id: str) -> list[str]:
        """The run ids of the run's repeat group, by repeat_index (just the run when it has no group)."""
        rows = self.query("SELECT r.run_id FROM runs r JOIN runs me ON r.repeat_group = me.repeat_group "
                          "WHERE me.run_id = ? ORDER BY r.repeat_index, r.run_id", [run_id])[1]
        return [r[0] for r in rows] or [run_id]

    # -- sweeps (issue 10): one row per sweep and per trial (runner.search.sweep) -------------------------

    def put_sweep(self, sweep_id: str, name: str, spec: dict, storage: str, objective: str, member: str | None,
                  direction: str) -> None:
        """The sweep's row, once (a sweep applied again keeps its first row)."""
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchall():
                con.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [sweep_id, name, json.dumps(spec), storage, objective, member, direction, now()])

    def put_trial(self, sweep_id: str, number: int, status: str, params: dict, run_id: str | None = None,
                  value: float | None = None, retry_of: int | None = None, value_sd: float | None = None,
                  repeats: int | None = None) -> None:
        """Create or update a trial's row and its `trial_params` rows, in one transaction."""
        with self.transaction() as con:
            old = con.execute("SELECT started_at FROM trials WHERE sweep_id = ? AND number = ?",
                              [sweep_id, number]).fetchall()
            con.execute("DELETE FROM trials WHERE sweep_id = ? AND number = ?", [sweep_id, number])
            con.execute("DELETE FROM trial_params WHERE sweep_id = ? AND number = ?", [sweep_id, number])
            done = now() if status != "running" else None
            con.execute("INSERT INTO trials (sweep_id, number, run_id, status, value, params, retry_of, started_at, "
                        "finished_at, value_sd, repeats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [sweep_id, number, run_id, status, value, json.dumps(params), retry_of,
                         old[0][0] if old else now(), done, value_sd, repeats])
            rows = [[sweep_id, number, k, float(v) if isinstance(v, (int, float)) else None,
                     json.dumps(v) if not isinstance(v, str) else v] for k, v in params.items()]
            if rows:
                con.executemany("INSERT INTO trial_params VALUES (?, ?, ?, ?, ?)", rows)

    # -- calibrations (issue 9): fitted on stored validation probabilities (runner.posthoc.calibrate) ---

    def log_calibrations(self, calibrations) -> None:
        """Replace each calibration's `calibrations` row and its `metrics` rows (`<metric>@<method>` and
        `<metric>@none`, epoch NULL), all in one transaction: calibrating again never duplicates a row.
        Each item has run_id, kind, member, checkpoint, method, temperature, bias, valid_log_loss_before,
        valid_log_loss_after and `metric_rows()` -> (split, name, value)."""
        created = now()
        with self.transaction() as con:
            for c in calibrations:
                key = [c.run_id, c.kind, c.member, c.checkpoint]
                where = "run_id = ? AND kind = ? AND member = ? AND checkpoint = ?"
                con.execute(f"DELETE FROM calibrations WHERE {where} AND method = ?", key + [c.method])
                con.execute(
                    "INSERT INTO calibrations (run_id, kind, member, checkpoint, method, temperature, bias, "
                    "valid_log_loss_before, valid_log_loss_after, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    key + [c.method, float(c.temperature), c.bias, c.valid_log_loss_before, c.valid_log_loss_after,
                           created])
                con.execute(f"DELETE FROM metrics WHERE {where} AND (ends_with(name, ?) OR ends_with(name, '@none'))",
                            key + ["@" + c.method])
                rows = [key + [split, name, float(value)] for split, name, value in c.metric_rows()]
                if rows:
                    con.executemany("INSERT INTO metrics (run_id, kind, member, checkpoint, epoch, split, name, value) "
                                    "VALUES (?, ?, ?, ?, NULL, ?, ?, ?)", rows)

    # -- predictions on new inputs (issue 9): `runner predict` (runner.data.inputs, runner.use.predict) -----

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
        from runner.store.store import _insert, insert_predictions, prediction_batch

        batches = [prediction_batch(run_id, member, checkpoint, checkpoint_epoch(checkpoint), split, idx, probs, kind)
                   for kind, member, checkpoint, probs in predictions]
        with self.transaction() as con:
            con.execute("DELETE FROM examples WHERE dataset_id = ? AND split = ?", [dataset_id, split])
            _insert(con, "examples", examples)
            for kind, member, checkpoint, _ in predictions:  # only what this call rewrites: other strategies stay
                con.execute("DELETE FROM predictions WHERE run_id = ? AND split = ? AND kind = ? AND member = ? "
                            "AND checkpoint = ?", [run_id, split, kind, member, checkpoint])
            for b in batches:
                insert_predictions(con, b)
            con.execute("DELETE FROM inputs WHERE run_id = ? AND split = ? AND strategy = ?", [run_id, split, strategy])
            con.execute("INSERT INTO inputs (run_id, split, input_hash, source, rows, has_labels, strategy, calibrated, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [run_id, split, input_hash, source, n, labels is not None, strategy, calibrated, now()])
        return n + sum(b.num_rows for b in batches) + 1

    # -- adaptations (issue 11): masked-LM adaptation before fine-tuning (runner.train.adapt) ---------------

    def log_adaptation(self, info: dict, path: str) -> None:
        """An adaptation and its MLM losses per epoch, once per key (a reused adaptation keeps its row)."""
        with self.transaction() as con:
            if con.execute("SELECT 1 FROM adaptations WHERE adapt_key = ?", [info["key"]]).fetchall():
                return
            con.execute("INSERT INTO adaptations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [info["key"], info["backbone"], info["model"], json.dumps(info["settings"]),
                         json.dumps(info["sources"]), info["n_texts"], info["n_heldout"], info["corpus_hash"],
                         path, info.get("seconds"), now()])
            rows = [(info["key"], h["epoch"], split, h[split]) for h in info["history"]
                    for split in ("train", "heldout", "train_running") if h.get(split) is not None]
            if rows:
                con.executemany("INSERT INTO adapt_losses VALUES (?, ?, ?, ?)", rows)

    def set_member_adapt(self, run_id: str, member: str, key: str) -> None:
        with self.transaction() as con:
            con.execute("UPDATE members SET adapt_key = ? WHERE run_id = ? AND member = ?", [key, run_id, member])

    def adapt_keys(self) -> set[str]:
        """Every adaptation key a member of this store started from."""
        return {r[0] for r in self.query("SELECT DISTINCT adapt_key FROM members WHERE adapt_key IS NOT NULL")[1]}
