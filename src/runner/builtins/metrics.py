"""Built-in metrics: `accuracy` and `f1_macro` (loss is computed by the trainer, not registered)."""

from __future__ import annotations

import numpy as np

from runner.hookspecs import hookimpl


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(-1) == labels).mean())


def f1_macro(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro-averaged F1 over every label (a label never predicted nor present scores 0, as sklearn)."""
    pred = probs.argmax(-1)
    scores = []
    for c in range(probs.shape[-1]):
        tp = np.sum((pred == c) & (labels == c))
        fp = np.sum((pred == c) & (labels != c))
        fn = np.sum((pred != c) & (labels == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


@hookimpl
def register_metrics(register):
    register("accuracy", accuracy, greater_is_better=True)
    register("f1_macro", f1_macro, greater_is_better=True)
