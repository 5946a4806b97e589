"""Built-in metrics: `accuracy`, `f1_macro` and `log_loss`.

`loss` is not a metric: it is the training objective (the spec's loss, label smoothing and all),
computed by Trainer for members only. `log_loss`, the negative log-likelihood of the stored
probabilities, is the one loss every member checkpoint, SWA checkpoint and ensemble has, so all rows
of `runner compare` compare on the same number.
"""

from __future__ import annotations

import numpy as np

from runner.hookspecs import hookimpl

EPS = 1e-12  # a probability of exactly 0 for the true class would make the log-loss infinite


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


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log of the probability given to the true class (natural log)."""
    p = probs[np.arange(len(labels)), labels].astype(np.float64)
    return float(-np.mean(np.log(np.clip(p, EPS, None))))


@hookimpl
def register_metrics(register):
    register("accuracy", accuracy, greater_is_better=True)
    register("f1_macro", f1_macro, greater_is_better=True)
    register("log_loss", log_loss, greater_is_better=False)
