"""`runner compare`: selection strategies of a run, for each member and the ensemble, from the store.

One block per strategy (runner.core.selection), one row per member plus the spec's ensemble: the
chosen epoch, the validation number the spec selects by, test accuracy / macro-F1 / log-loss
(`log_loss` is the one loss every member, SWA checkpoint and ensemble has; the training objective is
the column `objective`), and how far the predicted class distribution is from the true one (total
variation distance, and each class's predicted share beside its true share). runner.analysis.columns
names the columns. By default the table shows the spec's strategy, `swa`, `last` and `best_eval_loss`
(the notebook's alternative); strategies that pick the same checkpoints share one block.

Nothing is written: the spec's ensemble of a strategy that `apply` did not build is computed from the
stored probabilities in memory (runner.posthoc.results), and picks of strategies registered after
the run trained from its stored epochs. A run with replicas (`repeats = N`) also gets each strategy's
test numbers over its seeds and paired bootstrap intervals (runner.analysis.compare_seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group
from rich.text import Text

from runner.analysis import columns as cols
from runner.analysis.compare_calibration import render as render_calibrations
from runner.analysis.compare_refit import add_refit_rows
from runner.analysis.compare_seeds import over_seeds
from runner.analysis.tables import table as new_table
from runner.core.records import RunRecord
from runner.core.selection import checkpoint_epoch
from runner.errors import InputError
from runner.posthoc.calibrate import stored_for
from runner.posthoc.ensemble import SPEC_ENSEMBLE
from runner.posthoc.picks import strategy_checkpoints
from runner.posthoc.results import RunResults
from runner.store import Store

DEFAULT_STRATEGIES = ("swa", "last", "best_eval_loss")  # after the spec's own
HIGHLIGHTED = "test_log_loss"


@dataclass
class Comparison:
    run_id: str
    label_names: list[str]
    dist_split: str  # the split the class distribution is measured on (test when it has labels)
    true_shares: list[float]
    columns: tuple[str, ...]  # of the records (json, csv)
    lower_is_better: frozenset[str]
    rows: list[dict]
    calibrations: list = field(default_factory=list)  # runner calibrate's results for these rows (calibrate_run)
    seeds: object = None  # a replica's numbers over its repeat group (compare_seeds.SeedComparison), else None
    shown: tuple[str, ...] = ()  # the table's columns (`shares`: one per class)
    selected: str = ""  # the spec's own strategy
    results: RunResults | None = None  # what the rows were read from (runner compare --classes reads on)

    def records(self) -> list[dict]:
        """Flat rows for CSV/JSON; a replica's rows over seeds (kind `seeds` and `bootstrap`) come last,
        with columns of their own (compare_seeds.SeedComparison.records)."""
        out = []
        metrics = [c for c in self.columns if c != cols.SHARES]
        for r in self.rows:
            rec = {k: r[k] for k in ("strategy", "kind", "member", "checkpoint", "epoch", *metrics)}
            if cols.SHARES in self.columns:
                for name, pred, true in zip(self.label_names, r["pred_shares"], self.true_shares):
                    rec[f"pred_share_{name}"] = pred
                    rec[f"true_share_{name}"] = true
            out.append(rec)
        return out + (self.seeds.records() if self.seeds is not None else [])


def default_strategies(run: RunRecord, registry) -> list[str]:
    """The spec's strategy, `swa`, `last` and `best_eval_loss`, those registered."""
    return [s for s in dict.fromkeys([run.selected_strategy, *DEFAULT_STRATEGIES]) if registry.selection(s) is not None]


def compare(store: Store, run: RunRecord, registry, strategies: list[str] | None = None,
            columns: tuple[str, ...] | None = None, seeds: bool = True) -> Comparison:
    """The rows of `strategies` (registered names; default: every registered one), with the numbers of
    `columns` (default: the records' columns, runner.analysis.columns.record_columns). Nothing is written."""
    registered = [s.name for s in registry.selections()]
    if strategies:
        unknown = [s for s in strategies if s not in registered]
        if unknown:
            raise InputError(f"--strategies: no strategy {unknown[0]!r}; registered: {', '.join(registered)}")
    wanted = strategies or registered
    k = run.num_labels
    finished = [m.name for m in run.finished]
    checkpoints = strategy_checkpoints(store, run, registry, wanted)
    results = RunResults(store, run, registry).add_spec_ensembles(checkpoints)

    true_counts = store.label_counts(run.dataset_id)  # split -> [count per label]
    dist_split = "test" if "test" in true_counts else "valid"
    true = true_counts.get(dist_split, [0] * k)
    true_shares = [c / (sum(true) or 1) for c in true]
    pred_counts = results.predicted_counts(dist_split)  # (kind, member, checkpoint) -> counts

    record_columns = columns or (*cols.record_columns(run, registry), cols.SHARES)
    shown = columns or cols.shown_columns(run, registry)
    metric_columns = [c for c in dict.fromkeys([*record_columns, *shown]) if c not in (cols.TVD, cols.SHARES)]
    rows = []
    for s in wanted:
        entries = [("member", m, checkpoints[s].get(m)) for m in finished]
        entries.append(("ensemble", SPEC_ENSEMBLE, s))
        for kind, member, checkpoint in entries:
            key = (kind, member, checkpoint)
            if checkpoint is None or key not in results.metrics:
                continue
            m = results.metrics[key]
            pc = pred_counts.get(key, [0] * k)
            shares = [c / (sum(pc) or 1) for c in pc]
            row = {"strategy": s, "kind": kind, "member": member, "checkpoint": checkpoint,
                   "epoch": checkpoint_epoch(checkpoint) if kind == "member" else None,
                   "tvd": 0.5 * sum(abs(p - t) for p, t in zip(shares, true_shares)), "pred_shares": shares}
            row.update({c: cols.value(m, c) for c in metric_columns})
            rows.append(row)
    calibrated = stored_for(store, run, [(r["kind"], r["member"], r["checkpoint"]) for r in rows])
    add_refit_rows(store, run, rows, metric_columns, dist_split, true_shares, strategies)  # `refit:<strategy>`
    over = None
    if seeds and run.repeat_group is not None:  # a replica of `repeats = N`: the tables over seeds
        over = over_seeds(store, run, registry, wanted, results)
    lower = frozenset(c for c in [*metric_columns, cols.TVD] if cols.lower_is_better(c, registry))
    return Comparison(run.run_id, list(run.label_names), dist_split, true_shares, tuple(record_columns), lower,
                      rows, calibrated, over, tuple(shown), run.selected_strategy, results)


def blocks(c: Comparison) -> list[tuple[list[str], list[dict]]]:
    """(strategies, rows) per block of the table, in order: strategies whose rows show the same
    checkpoints and numbers share one block."""
    out: list[tuple[list[str], list[dict], tuple]] = []
    for r in c.rows:
        if not out or out[-1][0][-1] != r["strategy"]:
            out.append(([r["strategy"]], [], ()))
        out[-1][1].append(r)
    merged: list[tuple[list[str], list[dict], tuple]] = []
    for names, rows, _ in out:
        sig = tuple((r["kind"], r["member"], r["checkpoint"] if r["kind"] == "member" else "",
                     *[r.get(col) for col in c.shown if col != cols.SHARES], *r["pred_shares"]) for r in rows)
        refit = names[0].startswith("refit:")  # a refit's block stays its own, beside its parent's
        same = next((b for b in merged if b[2] == sig and not refit and not b[0][0].startswith("refit:")), None)
        if same is not None:
            same[0].extend(names)
        else:
            merged.append((list(names), rows, sig))
    return [(names, rows) for names, rows, _ in merged]


def render(c: Comparison):
    """A rich table, one block per strategy (or per group of strategies that pick the same
    checkpoints); the best value of each column in bold green. A calibrated run gets a second table:
    each calibration's numbers before and after (runner.posthoc.calibrate); a replica of `repeats = N`
    two more: each strategy over seeds, and intervals of its difference from the run's selection
    (runner.analysis.compare_seeds)."""
    metrics = [col for col in c.shown if col not in (cols.SHARES,)]
    shares = cols.SHARES in c.shown
    best = {}
    for col in metrics:
        vals = [r[col] for r in c.rows if r.get(col) is not None]
        if vals:
            best[col] = min(vals) if col in c.lower_is_better else max(vals)
    caption = ("ep: the epoch picked; eval: the validation split; log loss: the NLL of the stored probabilities, "
               "which every row has (objective: the training loss); tvd: the distance of the predicted class "
               "distribution from the true one" + ("; class columns: share predicted, true share in the header"
                                                   if shares else "")
               + ". a = b: strategies that pick the same checkpoints. More: --all, --columns, --classes.")
    table = new_table(f"Run {c.run_id}: selection strategies ({c.dist_split})", caption)
    table.add_column("strategy\n  member", min_width=10, overflow="fold")
    table.add_column("ep", justify="right", no_wrap=True)
    for col in metrics:
        table.add_column(cols.header(col), justify="right", no_wrap=True,
                         style="bold" if col == HIGHLIGHTED else None)
    if shares:
        for name, t in zip(c.label_names, c.true_shares):
            table.add_column(f"{name.replace('_', chr(10))}\n{t:.1%}", justify="right", min_width=5,
                             overflow="ellipsis")
    for n, (names, rows) in enumerate(blocks(c)):
        if n:
            table.add_section()
        label = "\n= ".join(f"{s} (spec)" if s == c.selected else s for s in names)  # a name a line
        table.add_row(Text(label, style="bold"))
        for r in rows:
            swa = r["kind"] == "member" and r["checkpoint"] == "swa"
            cells = ["  " + r["member"], str(r["epoch"]) if r["epoch"] is not None else ("swa" if swa else "")]
            for col in metrics:
                v = r.get(col)
                text = "" if v is None else f"{v:.4f}"
                cells.append(Text(text, style="bold green") if v is not None and best.get(col) == v else text)
            if shares:
                cells += [f"{s:.1%}" for s in r["pred_shares"]]
            table.add_row(*cells, style="italic" if r["kind"] == "ensemble" else None)
    parts = [table]
    if c.calibrations:  # a calibrated run: `runner calibrate`'s before/after table under the strategies'
        parts.append(render_calibrations(c.calibrations, c.label_names, c.true_shares, c.dist_split,
                                         f"Run {c.run_id}: calibrations fitted on valid (runner calibrate)"))
    if c.seeds is not None:  # a replica of `repeats = N`: means over seeds, intervals of differences
        parts.extend(c.seeds.render())
    return table if len(parts) == 1 else Group(*parts)
