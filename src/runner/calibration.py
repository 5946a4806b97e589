"""Calibration of stored probabilities: temperature scaling, and an optional per-class bias (a prior
correction), fitted on the validation split with no model run."""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def apply(probs: np.ndarray, temperature: float, bias: np.ndarray | None = None) -> np.ndarray:
    """Calibrated probabilities: softmax(log(probs) / temperature + bias), row by row."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, None)) / float(temperature)
    if bias is not None:
        z = z + np.asarray(bias, dtype=np.float64)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
