"""The one home of the numbers every part of runner computes the same way: softmax, per-example
correctness and negative log-likelihood, and the metrics accuracy, macro F1 and log-loss.

Training stores them per checkpoint (the built-in metrics register these functions), ensembles and
calibrations report them, and the intervals over seeds resample the per-example forms, so a number
means the same wherever it is shown.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12  # a probability of exactly 0 for the true class would make the log-loss infinite


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities (float32) of logits (..., K), computed in float64."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def correct(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1.0 where the most probable class (the first, on a tie) is the label, else 0.0; the mean is
    accuracy. `probs` (..., n, k), `labels` (n,)."""
    return (np.asarray(probs).argmax(axis=-1) == np.asarray(labels)).astype(np.float64)


def nll(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-log p(label) per example (natural log), probabilities clipped at EPS; the mean is log-loss.
    `probs` (..., n, k), `labels` (n,)."""
    p = np.take_along_axis(np.asarray(probs, dtype=np.float64),
                           np.broadcast_to(np.asarray(labels)[:, None], np.shape(probs)[:-1] + (1,)), axis=-1)
    return -np.log(np.clip(p[..., 0], EPS, None))


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
    return float(np.mean(nll(probs, labels))) + 0.0  # + 0.0: never -0.0
