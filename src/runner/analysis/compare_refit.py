"""`runner compare PARENT`'s refit rows: a block per refit of the run, beside the parent's block of
the strategy the refit trained by (runner.run.refit)."""

from __future__ import annotations

from runner.analysis.columns import value
from runner.core.records import RunRecord
from runner.core.selection import checkpoint_epoch
from runner.store import Store


def add_refit_rows(store: Store, parent: RunRecord, rows: list[dict], columns, dist_split: str,
                   true_shares: list[float], strategies: list[str] | None = None) -> None:
    """`runner compare PARENT`: a block per refit of the run, labelled `refit:<strategy>`, put right
    after the parent's block of that strategy: each member at the checkpoint the refit trained (its
    last epoch, or SWA) and the refit's ensemble, with their test numbers (a refit has no validation
    split, so its eval_ columns stay empty). With `strategies` (compare's --strategies), only refits of those."""
    k = len(true_shares)
    for r in store.refit_runs(parent.run_id):
        if strategies and r["refit_strategy"] not in strategies:
            continue
        refit_run = store.run(r["run_id"])
        metrics = store.checkpoint_metrics(refit_run.run_id)
        counts = store.prediction_counts(refit_run.run_id, dist_split, k)
        swa = refit_run.ensemble_checkpoint == "swa"
        entries = [("member", m.name, "swa" if swa else m.selected_checkpoint) for m in refit_run.finished]
        entries.append(("ensemble", "ensemble", "swa" if swa else refit_run.selected_strategy))
        block = []
        for kind, member, checkpoint in entries:
            m = metrics.get((kind, member, checkpoint))
            if m is None:
                continue
            pc = counts.get((kind, member, checkpoint))
            shares = [c / (sum(pc) or 1) for c in pc] if pc else [0.0] * k
            row = {"strategy": f"refit:{refit_run.refit_strategy}", "kind": kind, "member": member,
                   "checkpoint": checkpoint, "epoch": checkpoint_epoch(checkpoint) if kind == "member" else None,
                   "tvd": 0.5 * sum(abs(p - t) for p, t in zip(shares, true_shares)) if pc else None,
                   "pred_shares": shares}
            row.update({c: value(m, c) for c in columns if c != "tvd"})
            block.append(row)
        after = [i for i, row in enumerate(rows) if row["strategy"] == refit_run.refit_strategy]
        at = after[-1] + 1 if after else len(rows)
        rows[at:at] = block
