"""Per-class truth: the confusion matrix and each class's precision, recall and F1 of a member
checkpoint, an ensemble (stored, or computed in memory as `compare` does) or a stored prediction of
new inputs with labels (`runner predict`'s split `input-<hash>`). `runner compare --classes` prints
it, `runner report` and `runner plot` show the spec's model; the maths is runner.core.maths
(`confusion`, `per_class`), the SQL twin the store's `confusion` view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.text import Text

from runner.analysis.tables import table as new_table
from runner.core.maths import confusion, per_class
from runner.posthoc.results import RunResults


@dataclass
class ClassReport:
    kind: str
    member: str
    checkpoint: str
    strategies: list[str]  # the strategies that pick this row (one table for all of them)
    split: str
    labels: list[str]
    matrix: np.ndarray  # (k, k): rows the true label, columns the predicted one

    @property
    def stats(self) -> dict[str, np.ndarray]:
        return per_class(self.matrix)

    @property
    def name(self) -> str:
        """`bert-h64 epoch-5` for a member, `ensemble (best_eval_accuracy)` for an ensemble."""
        return f"{self.member} {self.checkpoint}" if self.kind == "member" else f"{self.member} ({self.checkpoint})"

    def records(self) -> list[dict]:
        """One row per true class: its counts by predicted class, support, precision, recall, F1."""
        st = self.stats
        out = []
        for i, name in enumerate(self.labels):
            rec = {"strategy": ",".join(self.strategies), "kind": self.kind, "member": self.member,
                   "checkpoint": self.checkpoint, "split": self.split, "label": name,
                   "support": int(st["support"][i]), "predicted": int(st["predicted"][i]),
                   "precision": float(st["precision"][i]), "recall": float(st["recall"][i]), "f1": float(st["f1"][i])}
            rec.update({f"pred_{other}": int(self.matrix[i, j]) for j, other in enumerate(self.labels)})
            out.append(rec)
        return out


def class_reports(results: RunResults, rows: list[dict], split: str) -> list[ClassReport]:
    """A report per distinct row of `rows` (compare's rows: strategy, kind, member, checkpoint) that has
    labelled predictions on `split`; rows with the same predictions (a member checkpoint picked by
    several strategies, an ensemble of the same checkpoints) share one."""
    labels = list(results.run.label_names)
    k = len(labels)
    out: list[ClassReport] = []
    seen: dict[tuple, ClassReport] = {}
    for r in rows:
        if str(r["strategy"]).startswith("refit:"):
            continue  # a refit is a run of its own: `runner compare REFIT --classes`
        key = (r["kind"], r["member"], r["checkpoint"])
        idx, probs, truth = results.labelled(key, split)
        if truth is None or not len(idx):
            continue
        matrix = confusion(probs.argmax(axis=1), truth, k)
        same = (r["kind"], r["member"], r["checkpoint"] if r["kind"] == "member" else matrix.tobytes())
        if same in seen:
            seen[same].strategies.append(r["strategy"])
            continue
        report = ClassReport(r["kind"], r["member"], r["checkpoint"], [r["strategy"]], split, labels, matrix)
        seen[same] = report
        out.append(report)
    return out


def render(report: ClassReport, run_id: str, caption: bool = True):
    """The confusion matrix with precision, recall and F1 beside each true class, and a macro row;
    `caption` False leaves out the legend (said once under the last of several)."""
    st = report.stats
    n = int(report.matrix.sum())
    by = [s for s in report.strategies if s != report.checkpoint]
    table = new_table(f"Run {run_id}: {report.name} on {report.split}, {n} examples"
                      + (f" ({', '.join(by)})" if by else ""),
                      "rows: the true class; columns: the class predicted (the diagonal is right). precision: of "
                      "the examples predicted as the class, the share that are; recall: of the class's examples, "
                      "the share found; F1: their harmonic mean. Last row: how often each class was predicted, and "
                      "the macro means" if caption else None)
    table.add_column("true \\ predicted", min_width=10, overflow="fold")
    for name in report.labels:
        table.add_column(name.replace("_", "\n"), justify="right", min_width=5, overflow="ellipsis")
    for col in ("n", "precision", "recall", "F1"):
        table.add_column(col, justify="right", no_wrap=True)
    for i, name in enumerate(report.labels):
        cells = [name] + [Text(str(int(v)), style="bold") if i == j else str(int(v))
                          for j, v in enumerate(report.matrix[i])]
        cells += [str(int(st["support"][i])), f"{st['precision'][i]:.4f}", f"{st['recall'][i]:.4f}",
                  f"{st['f1'][i]:.4f}"]
        table.add_row(*cells)
    table.add_section()
    table.add_row("predicted (macro)", *[str(int(v)) for v in st["predicted"]], str(n),
                  f"{np.mean(st['precision']):.4f}", f"{np.mean(st['recall']):.4f}", f"{np.mean(st['f1']):.4f}",
                  style="italic")
    return table
