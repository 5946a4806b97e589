"""Tables a person reads at the end of a run (rich), built from the store alone."""

from __future__ import annotations

from rich.table import Table

from runner.analysis.columns import OBJECTIVE, header, value
from runner.analysis.tables import table as new_table
from runner.core.records import RunRecord
from runner.store import Store


def summary_table(store: Store, run: RunRecord) -> Table:
    """Per member: status, epochs, the selected epoch and its validation and test numbers."""
    metric = f"eval_{OBJECTIVE}" if run.selection_metric == "eval_loss" else run.selection_metric
    tested = ["test_accuracy", "test_f1_macro", "test_log_loss"]
    # a refit has no validation split: nothing was selected, each member trained for its parent's epochs
    shown = tested if run.is_refit else list(dict.fromkeys([metric, *tested]))
    values = store.checkpoint_metrics(run.run_id)
    epochs = store.epoch_counts(run.run_id)
    how = (f"refit of {run.parent_run_id} on train+valid, epochs by {run.refit_strategy}" if run.is_refit
           else f"selection by {metric}")
    table = new_table(f"Run {run.run_id} ({run.status}) · {how}")
    for col in ("member", "backbone", "status"):
        table.add_column(col, overflow="fold")
    table.add_column("epochs", justify="right", no_wrap=True)
    table.add_column("checkpoint" if run.is_refit else "selected", justify="right", no_wrap=True)
    for col in shown:
        table.add_column(header(col), justify="right", no_wrap=True)
    stored = [(m, values.get(("member", m.name, m.selected_checkpoint), {}) if m.selected_checkpoint else {})
              for m in run.members]
    rows = [(m, {k: v for k in shown if (v := value(got, k)) is not None}) for m, got in stored]
    best = {}
    for k in shown:
        have = [v[k] for _, v in rows if k in v]
        if have:
            lower = k.endswith("loss") or (k == metric and not run.greater_is_better)
            best[k] = min(have) if lower else max(have)
    for m, v in rows:
        cells = []
        for k in shown:
            if k not in v:
                cells.append("")
            else:
                s = f"{v[k]:.4f}"
                cells.append(f"[bold green]{s}[/]" if len(rows) > 1 and v[k] == best.get(k) else s)
        status = m.status if m.status != "failed" else "[red]failed[/]"
        table.add_row(m.name, m.backbone, status, str(epochs.get(m.name, 0)), m.selected_checkpoint or "", *cells)
    return table
