"""Tables a person reads at the end of a run (rich), built from the store alone."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from .store import Store


def summary_table(store_path: str | Path, run_id: str) -> Table:
    """Per member: status, epochs, the selected epoch and its validation and test numbers."""
    store = Store(store_path)
    run = store.query_dicts("SELECT spec, status FROM runs WHERE run_id = ?", [run_id])[0]
    spec = json.loads(run["spec"])
    metric = spec["selection"]["resolved"]["metric"]
    rows = store.query_dicts(
        """
        SELECT m.member, m.backbone, m.status, m.selected_checkpoint, m.error,
               (SELECT max(epoch) FROM epochs e WHERE e.run_id = m.run_id AND e.member = m.member) AS epochs
        FROM members m WHERE m.run_id = ? ORDER BY m.started_at
        """,
        [run_id],
    )
    table = Table(title=f"Run {run_id} ({run['status']}) · selection by {metric}")
    for col in ("member", "backbone", "status", "epochs", "selected", metric, "test_accuracy", "test_f1_macro"):
        table.add_column(col, justify="right" if col not in ("member", "backbone", "status") else "left")
    best = {}
    values = []
    for r in rows:
        sel = r["selected_checkpoint"]
        v = {}
        if sel:
            got = store.query_dicts(
                "SELECT split, name, value FROM metrics WHERE run_id = ? AND member = ? AND checkpoint = ?",
                [run_id, r["member"], sel],
            )
            v = {f"{'eval' if g['split'] == 'valid' else g['split']}_{g['name']}": g["value"] for g in got}
        values.append(v)
        for k in (metric, "test_accuracy", "test_f1_macro"):
            if k in v:
                better = max if not k.endswith("loss") else min
                best[k] = better(best.get(k, v[k]), v[k])
    for r, v in zip(rows, values):
        cells = []
        for k in (metric, "test_accuracy", "test_f1_macro"):
            if k not in v:
                cells.append("")
            else:
                s = f"{v[k]:.4f}"
                cells.append(f"[bold green]{s}[/]" if len(rows) > 1 and v[k] == best.get(k) else s)
        status = r["status"] if r["status"] != "failed" else "[red]failed[/]"
        table.add_row(r["member"], r["backbone"], status, str(r["epochs"] or 0), r["selected_checkpoint"] or "", *cells)
    return table
