"""The one home of the numbers every part of runner computes the same way: softmax, per-example
correctness and negative log-likelihood, the metrics accuracy, macro F1 and log-loss, and the
confusion matrix with each class's precision, recall and F1.

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


def confusion(pred: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: row = the true label, column = the predicted one. `pred` and `labels` (n,)
    label ids in [0, k)."""
    pred = np.asarray(pred, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Each class's `precision`, `recall` and `f1` (float64, (k,)) and `support` (true count) and
    `predicted` (predicted count) of a confusion matrix (rows true, columns predicted). A class never
    predicted has precision 0, one never present recall 0, and F1 0 when both are, as sklearn's
    `zero_division=0`."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    support, predicted = m.sum(axis=1), m.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = support + predicted  # 2tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64),
            "predicted": predicted.astype(np.int64)}


def f1_macro(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro-averaged F1 over every label (a label never predicted nor present scores 0, as sklearn)."""
    k = probs.shape[-1]
    return float(np.mean(per_class(confusion(probs.argmax(-1), labels, k))["f1"]))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log of the probability given to the true class (natural log)."""
    return float(np.mean(nll(probs, labels))) + 0.0  # + 0.0: never -0.0
