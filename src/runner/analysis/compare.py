"""`runner compare`: every selection strategy of a run, for each member and the ensemble, from the store.

One block per registered strategy (runner.core.selection), one row per member plus the spec's ensemble:
the chosen epoch, validation accuracy and log-loss, test accuracy / macro-F1 / log-loss (`log_loss`
is the one loss every member, SWA checkpoint and ensemble has; the training objective stays stored
as each member's `loss`), and how far the predicted class distribution is from the true one (total
variation distance, and each class's predicted share beside its true share). An ensemble over a
strategy that was not built at `apply` time is built here from the stored probabilities, and stored,
so SQL sees it too. A run with replicas (`repeats = N`) also gets each strategy's test numbers over
its seeds and paired bootstrap intervals (runner.analysis.compare_seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text

from runner.analysis.compare_calibration import render as render_calibrations
from runner.analysis.compare_refit import add_refit_rows
from runner.analysis.compare_seeds import over_seeds
from runner.core.records import RunRecord
from runner.core.selection import checkpoint_epoch
from runner.errors import InputError
from runner.posthoc.calibrate import stored_for
from runner.posthoc.ensemble import SPEC_ENSEMBLE, build_missing_ensembles
from runner.posthoc.picks import strategy_checkpoints
from runner.store import Store

BASE_COLUMNS = ("eval_accuracy", "eval_log_loss", "test_accuracy", "test_f1_macro", "test_log_loss", "tvd")
LOWER_IS_BETTER = {"eval_log_loss", "test_log_loss", "tvd"}
HIGHLIGHTED = "test_log_loss"


@dataclass
class Comparison:
    run_id: str
    label_names: list[str]
    dist_split: str  # the split the class distribution is measured on (test when it has labels)
    true_shares: list[float]
    columns: tuple[str, ...]
    lower_is_better: frozenset[str]
    rows: list[dict]
    calibrations: list = field(default_factory=list)  # runner calibrate's results for these rows (calibrate_run)
    seeds: object = None  # a replica's numbers over its repeat group (compare_seeds.SeedComparison), else None

    def records(self) -> list[dict]:
        """Flat rows for CSV/JSON; a replica's rows over seeds (kind `seeds` and `bootstrap`) come last,
        with columns of their own (compare_seeds.SeedComparison.records)."""
        out = []
        for r in self.rows:
            rec = {k: r[k] for k in ("strategy", "kind", "member", "checkpoint", "epoch", *self.columns)}
            for name, pred, true in zip(self.label_names, r["pred_shares"], self.true_shares):
                rec[f"pred_share_{name}"] = pred
                rec[f"true_share_{name}"] = true
            out.append(rec)
        return out + (self.seeds.records() if self.seeds is not None else [])


def columns_for(run: RunRecord, registry) -> tuple[tuple[str, ...], frozenset[str]]:
    """(columns, those where lower is better): the base columns, plus the selection metric's when it
    is a metric of its own (a plugin's)."""
    extra: list[str] = []
    lower = set(LOWER_IS_BETTER)
    metric = run.selection_metric.removeprefix("eval_")
    comp = registry.metric(metric)
    if metric not in ("loss", "accuracy", "f1_macro", "log_loss") and comp is not None:
        extra = [f"eval_{metric}", f"test_{metric}"]
        if not comp.greater_is_better:
            lower.update(extra)
    columns = BASE_COLUMNS[:2] + tuple(extra[:1]) + BASE_COLUMNS[2:5] + tuple(extra[1:]) + BASE_COLUMNS[5:]
    return columns, frozenset(lower)


def compare(store: Store, run: RunRecord, registry, strategies: list[str] | None = None,
            build_missing: bool = True) -> Comparison:
    registered = [s.name for s in registry.selections()]
    if strategies:
        unknown = [s for s in strategies if s not in registered]
        if unknown:
            raise InputError(f"--strategies: no strategy {unknown[0]!r}; registered: {', '.join(registered)}")
    wanted = strategies or registered
    k = run.num_labels
    finished = [m.name for m in run.finished]
    checkpoints = strategy_checkpoints(store, run, registry, wanted)
    if build_missing:
        build_missing_ensembles(store, run, registry, checkpoints)

    metrics = store.checkpoint_metrics(run.run_id)  # (kind, member, checkpoint) -> {eval_accuracy: ...}
    true_counts = store.label_counts(run.dataset_id)  # split -> [count per label]
    dist_split = "test" if "test" in true_counts else "valid"
    true = true_counts.get(dist_split, [0] * k)
    true_shares = [c / (sum(true) or 1) for c in true]
    pred_counts = store.prediction_counts(run.run_id, dist_split, k)  # (kind, member, checkpoint) -> counts

    columns, lower = columns_for(run, registry)
    rows = []
    for s in wanted:
        entries = [("member", m, checkpoints[s].get(m)) for m in finished]
        entries.append(("ensemble", SPEC_ENSEMBLE, s))
        for kind, member, checkpoint in entries:
            key = (kind, member, checkpoint)
            if checkpoint is None or key not in metrics:
                continue
            m = metrics[key]
            pc = pred_counts.get(key, [0] * k)
            shares = [c / (sum(pc) or 1) for c in pc]
            row = {"strategy": s, "kind": kind, "member": member, "checkpoint": checkpoint,
                   "epoch": _epoch(checkpoint) if kind == "member" else None,
                   "tvd": 0.5 * sum(abs(p - t) for p, t in zip(shares, true_shares)), "pred_shares": shares}
            row.update({c: m.get(c) for c in columns if c != "tvd"})
            rows.append(row)
    calibrated = stored_for(store, run, [(r["kind"], r["member"], r["checkpoint"]) for r in rows])
    add_refit_rows(store, run, rows, columns, dist_split, true_shares, strategies)  # `refit:<strategy>` blocks
    seeds = None
    if run.repeat_group is not None:  # a replica of `repeats = N`: the tables over seeds (compare_seeds)
        seeds = over_seeds(store, run, registry, wanted, build_missing)
    return Comparison(run.run_id, list(run.label_names), dist_split, true_shares, columns, lower, rows, calibrated,
                      seeds)


def _epoch(checkpoint: str) -> int | None:
    return checkpoint_epoch(checkpoint)


def render(c: Comparison):
    """A rich table, one block per strategy; the best value of each column in bold green. A calibrated
    run gets a second table: each calibration's numbers before and after (runner.posthoc.calibrate); a
    replica of `repeats = N` two more: each strategy over seeds, and intervals of its difference from
    the run's selection (runner.analysis.compare_seeds)."""
    best = {}
    for col in c.columns:
        vals = [r[col] for r in c.rows if r[col] is not None]
        if vals:
            best[col] = min(vals) if col in c.lower_is_better else max(vals)
    table = Table(title=f"Run {c.run_id}: selection strategies (class shares on {c.dist_split})",
                  caption="eval_: the validation split. log_loss: the NLL of the stored probabilities, the one loss "
                          "every row has. tvd: total variation distance between predicted and true class "
                          "distribution; class columns: share predicted (true share in the header)")
    table.add_column("strategy", no_wrap=True)
    table.add_column("member", no_wrap=True)
    table.add_column("epoch", justify="right")
    for col in c.columns:
        table.add_column(col, justify="right", style="bold" if col == HIGHLIGHTED else None)
    for name, t in zip(c.label_names, c.true_shares):
        table.add_column(f"{name.replace('_', ' ')}\n(true {t:.1%})", justify="right")
    previous = None
    for r in c.rows:
        if previous is not None and r["strategy"] != previous:
            table.add_section()
        cells = [r["strategy"] if r["strategy"] != previous else "", r["member"]]
        previous = r["strategy"]
        swa = r["kind"] == "member" and r["checkpoint"] == "swa"
        cells.append(str(r["epoch"]) if r["epoch"] is not None else ("swa" if swa else ""))
        for col in c.columns:
            v = r[col]
            if v is None:
                cells.append("")
                continue
            text = f"{v:.4f}"
            cells.append(Text(text, style="bold green") if best.get(col) == v else text)
        cells += [f"{s:.1%}" for s in r["pred_shares"]]
        table.add_row(*cells, style="italic" if r["kind"] == "ensemble" else None)
    parts = [table]
    if c.calibrations:  # a calibrated run: `runner calibrate`'s before/after table under the strategies'
        parts.append(render_calibrations(c.calibrations, c.label_names, c.true_shares, c.dist_split,
                                         f"Run {c.run_id}: calibrations fitted on valid (runner calibrate)"))
    if c.seeds is not None:  # a replica of `repeats = N`: means over seeds, intervals of differences
        parts.extend(c.seeds.render())
    if len(parts) == 1:
        return table
    from rich.console import Group

    return Group(*parts)
