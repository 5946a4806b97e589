"""The calibration table `runner calibrate` prints and `runner compare` shows under its own: the stored
probabilities and the calibrated ones, row by row (runner.posthoc.calibrate)."""

from __future__ import annotations

from rich.table import Table

from runner.analysis.tables import table as new_table
from runner.core.records import metric_key
from runner.posthoc.calibrate import NONE, Calibrated


def render(rows: list[Calibrated], label_names, true, dist_split: str, title: str) -> Table:
    """Two rows per calibration, the stored probabilities then the calibrated ones: log-loss and ECE
    on valid and test, accuracy and TVD on `dist_split` and the class shares there (the true share in
    the header); with a prior correction, a third row holds each class's bias."""
    table = new_table(title, caption=f"stored: the probabilities as trained; then the calibration fitted on valid "
                                       f"(T: temperature, bias: added to each class's log-probability). ece: expected "
                                       f"calibration error, 15 bins. Class columns: share predicted on {dist_split}")
    table.add_column("member\ncheckpoint", overflow="fold")
    table.add_column("probabilities", overflow="fold")
    table.add_column("T", justify="right", no_wrap=True)
    cols = list(dict.fromkeys([("valid", "log_loss"), ("valid", "ece"), ("test", "log_loss"), ("test", "ece"),
                               (dist_split, "accuracy"), (dist_split, "tvd")]))
    for split, metric in cols:
        table.add_column(metric_key(split, metric).replace("_", "\n", 1).replace("_", " "), justify="right", no_wrap=True)
    for name, t in zip(label_names, true):
        table.add_column(f"{name.replace('_', chr(10))}\n{t:.1%}", justify="right", min_width=6, overflow="ellipsis")
    k = len(label_names)
    for n, r in enumerate(rows):
        if n:
            table.add_section()
        for method in (NONE, r.method):
            values = [r.get(split, metric, method) for split, metric in cols]
            shares = [r.get(dist_split, f"share_{i}", method) for i in range(k)]
            head = [r.member, "stored", ""] if method == NONE else [r.checkpoint, r.method, f"{r.temperature:.3f}"]
            table.add_row(*head, *["" if v is None else f"{v:.4f}" for v in values],
                          *["" if v is None else f"{v:.1%}" for v in shares],
                          style="bold" if method != NONE else None)
        if r.bias is not None:
            table.add_row("", "", "bias", *[""] * len(cols), *[f"{round(b, 2) + 0.0:+.2f}" for b in r.bias],
                          style="dim")
    return table
