"""`runner compare`: every selection strategy of a run, for each member and the ensemble, from the store.

One row per (strategy, member): the chosen epoch, validation accuracy, test accuracy / macro-F1 /
loss, and how far the predicted class distribution is from the true one (total variation distance,
and each class's predicted share beside its true share). An ensemble over a strategy that was not
built at `apply` time is built here from the stored probabilities, and stored, so SQL sees it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from .ensemble import STRATEGIES, build_ensemble, run_info
from .store import Store

COLUMNS = ("epoch", "valid_accuracy", "test_accuracy", "test_f1_macro", "test_loss", "tvd")
HIGHER_IS_BETTER = {"valid_accuracy": True, "test_accuracy": True, "test_f1_macro": True,
                    "test_loss": False, "tvd": False}


@dataclass
class Comparison:
    run_id: str
    label_names: list[str]
    dist_split: str  # the split the class distribution is measured on (test when it has labels)
    true_shares: list[float]
    rows: list[dict]

    def records(self) -> list[dict]:
        """Flat rows for CSV/JSON."""
        out = []
        for r in self.rows:
            rec = {k: r[k] for k in ("strategy", "member", "checkpoint", *COLUMNS)}
            for name, pred, true in zip(self.label_names, r["pred_shares"], self.true_shares):
                rec[f"pred_share_{name}"] = pred
                rec[f"true_share_{name}"] = true
            out.append(rec)
        return out


def compare(store: Store, run_id: str | None = None, build_missing: bool = True) -> Comparison:
    info = run_info(store, run_id)
    run_id = info["run_id"]
    labels = info["label_names"]
    k = len(labels)
    spec_weights = info["spec"].get("ensemble", {}).get("weights", "equal")

    finished = [r["member"] for r in store.query_dicts(
        "SELECT member FROM members WHERE run_id = ? AND status = 'finished' ORDER BY started_at", [run_id])]
    if build_missing and len(finished) > 1:
        have = {r["checkpoint"] for r in store.query_dicts(
            "SELECT DISTINCT checkpoint FROM metrics WHERE run_id = ? AND member = 'ensemble'", [run_id])}
        has_swa = store.query("SELECT count(*) FROM selections WHERE run_id = ? AND strategy = 'swa'", [run_id])[1][0][0]
        for strategy in STRATEGIES:
            if strategy not in have and (strategy != "swa" or has_swa):
                build_ensemble(store, run_id, strategy, spec_weights, name=strategy)

    metrics: dict[tuple[str, str], dict[str, float]] = {}
    for member, checkpoint, split, name, value in store.query(
        "SELECT member, checkpoint, split, name, value FROM metrics WHERE run_id = ?", [run_id]
    )[1]:
        metrics.setdefault((member, checkpoint), {})[f"{split}_{name}"] = value
    counts = store.query("SELECT split, label, count(*) FROM examples WHERE dataset_id = ? AND label IS NOT NULL "
                         "GROUP BY ALL", [info["dataset_id"]])[1]
    split_has_labels = {s for s, _, _ in counts}
    dist_split = "test" if "test" in split_has_labels else "valid"
    true = [0] * k
    for s, label, c in counts:
        if s == dist_split:
            true[label] = c
    total = sum(true) or 1
    true_shares = [c / total for c in true]

    pred_counts: dict[tuple[str, str], list[int]] = {}
    for member, checkpoint, pred, c in store.query(
        "SELECT member, checkpoint, pred, count(*) FROM predictions WHERE run_id = ? AND split = ? GROUP BY ALL",
        [run_id, dist_split],
    )[1]:
        pred_counts.setdefault((member, checkpoint), [0] * k)[pred] = c

    sel = store.query_dicts("SELECT member, strategy, checkpoint, epoch FROM selections WHERE run_id = ?", [run_id])
    chosen = {(r["strategy"], r["member"]): r for r in sel}
    rows = []
    for strategy in STRATEGIES:
        for member in finished + ["ensemble"]:
            r = chosen.get((strategy, member))
            if r is None:
                continue
            m = metrics.get((member, r["checkpoint"]), {})
            pc = pred_counts.get((member, r["checkpoint"]), [0] * k)
            n = sum(pc) or 1
            pred_shares = [c / n for c in pc]
            rows.append({
                "strategy": strategy,
                "member": member,
                "checkpoint": r["checkpoint"],
                "epoch": r["epoch"],
                "valid_accuracy": m.get("valid_accuracy"),
                "test_accuracy": m.get("test_accuracy"),
                "test_f1_macro": m.get("test_f1_macro"),
                "test_loss": m.get("test_loss"),
                "tvd": 0.5 * sum(abs(p - t) for p, t in zip(pred_shares, true_shares)),
                "pred_shares": pred_shares,
            })
    return Comparison(run_id, labels, dist_split, true_shares, rows)


def render(c: Comparison) -> Table:
    """A rich table, one block per strategy; the best value of each column in bold green."""
    best = {}
    for col, higher in HIGHER_IS_BETTER.items():
        vals = [r[col] for r in c.rows if r[col] is not None]
        if vals:
            best[col] = max(vals) if higher else min(vals)
    table = Table(title=f"Run {c.run_id}: selection strategies (class shares on {c.dist_split})",
                  caption="tvd: total variation distance between predicted and true class distribution; "
                          "class columns: share predicted (true share in the header)")
    table.add_column("strategy", no_wrap=True)
    table.add_column("member", no_wrap=True)
    for col in COLUMNS:
        table.add_column(col, justify="right")
    for name, t in zip(c.label_names, c.true_shares):
        table.add_column(f"{name.replace('_', ' ')}\n(true {t:.1%})", justify="right")
    previous = None
    for r in c.rows:
        if previous is not None and r["strategy"] != previous:
            table.add_section()
        cells = [r["strategy"] if r["strategy"] != previous else "", r["member"]]
        previous = r["strategy"]
        cells.append(str(r["epoch"]) if r["epoch"] is not None else "")
        for col in COLUMNS[1:]:
            v = r[col]
            if v is None:
                cells.append("")
                continue
            text = f"{v:.4f}"
            cells.append(Text(text, style="bold green") if best.get(col) == v else text)
        cells += [f"{s:.1%}" for s in r["pred_shares"]]
        table.add_row(*cells, style="italic" if r["member"] == "ensemble" else None)
    return table
