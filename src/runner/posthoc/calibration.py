"""Calibration of stored probabilities: temperature scaling, and an optional per-class bias (a prior
correction), fitted on the validation split with no model run.

The maths. With z = log p (the stored probabilities, clipped at 1e-12), a calibration maps a row to

    q = softmax(z / T + b)

`temperature` fits T alone (b = 0); `temperature+bias` fits T and a per-class bias b, which shifts the
class priors: a model that over-predicts a class (the notebook's focal alpha = inverse frequency)
gets a negative b for it. The fit minimises the mean validation NLL of q. Written with a = 1/T, the
logits a*z + b are linear in (a, b), so the NLL is the loss of a multinomial logistic regression with
fixed features: convex, and Newton's method with a backtracking (Armijo) line search finds its
minimum in a few iterations. A ridge of 1e-4 * |b|^2 / 2 keeps b finite when a class never occurs
in valid and picks the one solution with sum(b) = 0 (softmax ignores a constant shift; at the
optimum the NLL's gradient in b sums to zero, so the ridge's must too). T is kept in (0, 100]. The
fit is deterministic: float64, fixed iterations and step rule, no randomness, no threads.

ECE (expected calibration error) uses 15 equal-width bins of the top probability: the share-weighted
mean of |accuracy - mean confidence| over the bins, bin i holding confidences in (i/15, (i+1)/15].

The run-level command (`runner calibrate`) lives in `runner.posthoc.calibrate`, and what it stores is
described there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.core.maths import EPS, log_loss

METHODS = ("temperature", "temperature+bias")
ECE_BINS = 15
RIDGE = 1e-4  # on the bias only; see the module docstring
MIN_INVERSE_TEMPERATURE = 0.01  # T <= 100: past that the probabilities carry no information anyway
MAX_ITERATIONS = 100


@dataclass(frozen=True)
class Fit:
    """A fitted calibration: `bias` is None for `temperature`, else one value per class, summing to 0."""

    method: str
    temperature: float
    bias: np.ndarray | None
    log_loss_before: float
    log_loss_after: float
    iterations: int


def apply(probs: np.ndarray, temperature: float, bias: np.ndarray | None = None) -> np.ndarray:
    """Calibrated probabilities: softmax(log(probs) / temperature + bias), row by row."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, None)) / float(temperature)
    if bias is not None:
        z = z + np.asarray(bias, dtype=np.float64)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top class, over `bins` equal-width confidence bins."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)  # (i/bins, (i+1)/bins] -> i
    gap = np.bincount(which, weights=correct - conf, minlength=bins)  # per bin: sum(accuracy - confidence)
    return float(np.abs(gap).sum() / max(len(labels), 1))


def fit(probs: np.ndarray, labels: np.ndarray, method: str = "temperature") -> Fit:
    """Fit `method` (one of METHODS) on probabilities (n, K) and their true labels (n,)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; one of {', '.join(METHODS)}")
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, None))
    labels = np.asarray(labels, dtype=np.int64)
    n, k = z.shape
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    with_bias = method == "temperature+bias"
    theta = np.zeros(1 + (k if with_bias else 0))
    theta[0] = 1.0  # a = 1/T = 1 and b = 0: the stored probabilities themselves
    before = log_loss(probs, labels)  # the stored `log_loss` metric (float32 rows need not sum to 1 exactly)
    theta, iterations = _newton(theta, z, onehot, with_bias)
    a = float(theta[0])
    bias = theta[1:] - theta[1:].mean() if with_bias else None  # the ridge makes it sum to 0; exactly so
    after = log_loss(apply(np.exp(z), 1.0 / a, bias).astype(np.float64), labels)
    return Fit(method, 1.0 / a, bias, before, after, iterations)


def _objective(theta: np.ndarray, z: np.ndarray, onehot: np.ndarray, with_bias: bool):
    """(value, gradient, Hessian) of the mean NLL of softmax(a z + b) plus the ridge on b."""
    n, k = z.shape
    a = theta[0]
    logits = a * z + (theta[1:] if with_bias else 0.0)
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    s = e.sum(axis=1, keepdims=True)
    q = e / s
    nll = float(np.mean(np.log(s[:, 0]) - (logits * onehot).sum(axis=1)))
    r = q - onehot
    zbar = (q * z).sum(axis=1)  # the mean of z under q, per row
    g_a = float((r * z).sum() / n)
    h_aa = float(((q * z * z).sum(axis=1) - zbar ** 2).mean())
    if not with_bias:
        return nll, np.array([g_a]), np.array([[h_aa]])
    b = theta[1:]
    nll += 0.5 * RIDGE * float(b @ b)
    g_b = r.mean(axis=0) + RIDGE * b
    h_ab = (q * (z - zbar[:, None])).mean(axis=0)
    h_bb = np.diag(q.mean(axis=0)) - np.einsum("ni,nj->ij", q, q) / n + RIDGE * np.eye(k)
    grad = np.concatenate([[g_a], g_b])
    hess = np.empty((k + 1, k + 1))
    hess[0, 0], hess[0, 1:], hess[1:, 0], hess[1:, 1:] = h_aa, h_ab, h_ab, h_bb
    return nll, grad, hess


def _newton(theta: np.ndarray, z: np.ndarray, onehot: np.ndarray, with_bias: bool) -> tuple[np.ndarray, int]:
    """Damped Newton with a backtracking line search, a = theta[0] kept >= MIN_INVERSE_TEMPERATURE."""
    f, g, h = _objective(theta, z, onehot, with_bias)
    for it in range(1, MAX_ITERATIONS + 1):
        if np.max(np.abs(g)) < 1e-10:
            return theta, it - 1
        try:
            step = -np.linalg.solve(h + 1e-12 * np.eye(len(g)), g)
        except np.linalg.LinAlgError:
            step = -g  # a singular Hessian (every stored row uniform): fall back to gradient descent
        if g @ step >= 0:  # not a descent direction (numerically): take the gradient's
            step = -g
        t = 1.0
        while True:
            new = theta + t * step
            new[0] = max(new[0], MIN_INVERSE_TEMPERATURE)
            f_new, g_new, h_new = _objective(new, z, onehot, with_bias)
            if f_new <= f + 1e-4 * float(g @ (new - theta)):
                break
            t /= 2
            if t < 1e-10:  # no step decreases the objective: theta is the minimum to float precision
                return theta, it
        converged = f - f_new < 1e-14
        theta, f, g, h = new, f_new, g_new, h_new
        if converged:
            return theta, it
    return theta, MAX_ITERATIONS
