"""Ensembles built from stored probabilities: their metrics, predictions and weights, written in one
transaction (runner.posthoc.ensemble builds them), and what the store holds of them."""

from __future__ import annotations

from typing import Sequence

from runner.core.records import split_key
from runner.store.connection import now
from runner.store.rows import replace_checkpoint


class Ensembles:
    """Methods of `Store` (runner.store.store): they use its `transaction`, `query` and `query_dicts`."""

    def log_ensemble(self, ens, metrics: Sequence[tuple[str, str, float]]) -> None:
        """An ensemble's metrics, predictions and weights, in one transaction (see runner.posthoc.ensemble)."""
        self.log_ensembles([ens])

    def log_ensembles(self, ensembles) -> None:
        """Several ensembles (each with `.metrics` as {"eval_accuracy": ...}), in one transaction."""
        created = now()
        with self.transaction() as con:
            for ens in ensembles:
                predictions = [(split, ens.idx[split], ens.probs[split]) for split in ens.probs]
                rows = [(*split_key(k), v) for k, v in ens.metrics.items()]
                replace_checkpoint(con, ens.run_id, "ensemble", ens.name, ens.strategy, None, rows, predictions)
                con.execute("DELETE FROM ensemble_weights WHERE run_id = ? AND ensemble = ? AND strategy = ?",
                            [ens.run_id, ens.name, ens.strategy])
                con.executemany(
                    "INSERT INTO ensemble_weights (run_id, ensemble, strategy, method, member, member_checkpoint, "
                    "weight, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [[ens.run_id, ens.name, ens.strategy, ens.method, m, c, float(w), created]
                     for m, c, w in zip(ens.members, ens.checkpoints, ens.weights)],
                )

    def ensemble_strategies(self, run_id: str, name: str) -> set[str]:
        """The strategies an ensemble called `name` has been built for."""
        return {r[0] for r in self.query("SELECT DISTINCT checkpoint FROM metrics WHERE run_id = ? "
                                         "AND kind = 'ensemble' AND member = ?", [run_id, name])[1]}


    def ensemble_weights(self, run_id: str, ensemble: str | None = None, strategy: str | None = None) -> list[dict]:
        """Rows of `ensemble_weights` (ensemble, strategy, method, member, member_checkpoint, weight) of a
        run, of one ensemble and strategy when given."""
        return self.query_dicts(
            "SELECT ensemble, strategy, method, member, member_checkpoint, weight FROM ensemble_weights "
            "WHERE run_id = ? AND (? IS NULL OR ensemble = ?) AND (? IS NULL OR strategy = ?)",
            [run_id, ensemble, ensemble, strategy, strategy])
