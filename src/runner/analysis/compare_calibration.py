"""The calibration table `runner calibrate` prints and `runner compare` shows under its own: the stored
probabilities and the calibrated ones, row by row (runner.posthoc.calibrate)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from runner.analysis.columns import header
from runner.analysis.tables import table as new_table
from runner.core.records import metric_key
from runner.posthoc.calibrate import NONE, Calibrated


def render(rows: list[Calibrated], label_names, true, dist_split: str, title: str) -> Table:
    """Per calibration, a row naming the member (or ensemble) and checkpoint, then the stored
    probabilities and the calibrated ones: log-loss and ECE on valid and test, accuracy and TVD on
    `dist_split` and the class shares there (the true share in the header); with a prior correction,
    a last row holds each class's bias."""
    table = new_table(title, caption=f"method stored: the probabilities as trained; then the calibration fitted on "
                                     f"valid (T: its temperature; bias: added to each class's log-probability). ece: "
                                     f"expected calibration error, 15 bins. Class columns: share predicted on "
                                     f"{dist_split}, the true share in the header")
    table.add_column("member checkpoint\nmethod", overflow="fold")
    cols = list(dict.fromkeys([("valid", "log_loss"), ("valid", "ece"), ("test", "log_loss"), ("test", "ece"),
                               (dist_split, "accuracy"), (dist_split, "tvd")]))
    for split, metric in cols:
        table.add_column(header(metric_key(split, metric)), justify="right", no_wrap=True)
    for name, t in zip(label_names, true):
        table.add_column(f"{name.replace('_', chr(10))}\n{t:.1%}", justify="right", min_width=5, overflow="ellipsis")
    k = len(label_names)
    for n, r in enumerate(rows):
        if n:
            table.add_section()
        table.add_row(Text(f"{r.member} {r.checkpoint}", style="bold"))
        for method in (NONE, r.method):
            values = [r.get(split, metric, method) for split, metric in cols]
            shares = [r.get(dist_split, f"share_{i}", method) for i in range(k)]
            head = "stored" if method == NONE else f"{r.method}\nT {r.temperature:.3f}"
            table.add_row(head, *["" if v is None else f"{v:.4f}" for v in values],
                          *["" if v is None else f"{v:.1%}" for v in shares],
                          style="bold" if method != NONE else None)
        if r.bias is not None:
            table.add_row("bias", *[""] * len(cols), *[f"{round(b, 2) + 0.0:+.2f}" for b in r.bias], style="dim")
    return table
