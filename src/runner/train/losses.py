"""What a loss plugin receives (`LossContext`), and the focal-loss maths behind the built-in `focal`.

A loss plugin's `build(ctx, options)` returns a plain function of logits and integer labels that
returns the batch mean, so it plugs into Hugging Face `Trainer` through `compute_loss_func` and can
be unit-tested without a model. The built-in losses are registered in runner.builtins.losses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a loss is computed, not when the registry is loaded
    import torch


def smoothed_targets(labels: torch.Tensor, num_labels: int, smoothing: float) -> torch.Tensor:
    """One-hot targets mixed with the uniform distribution, as `F.cross_entropy(label_smoothing=)` does."""
    import torch
    import torch.nn.functional as F

    onehot = F.one_hot(labels, num_labels).to(torch.float32)
    return onehot * (1.0 - smoothing) + smoothing / num_labels


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, *, gamma: float, alpha: torch.Tensor | None,
               label_smoothing: float = 0.0, modulation: str = "true_class") -> torch.Tensor:
    """Multi-class focal loss (Lin et al. 2017) with per-class alpha and label smoothing; the batch mean.

    With p_i = softmax(logits_i), y_i the label, t_i the smoothed target distribution
    (t_ic = (1 - s) [c = y_i] + s / C for smoothing s and C classes):

    - ``true_class``: loss_i = alpha_{y_i} * (1 - p_{i,y_i})^gamma * (-sum_c t_ic log p_ic): the label-
      smoothed cross-entropy, scaled by how far the model is from the true class (the usual form, and
      the notebook's).
    - ``per_class``: loss_i = -sum_c alpha_c * t_ic * (1 - p_ic)^gamma * log p_ic: each class's term of the
      smoothed sum has its own factor (runner's only form before `modulation` existed).

    Without smoothing (t one-hot) the two are the same. With gamma = 0 and alpha = 1 both are exactly
    cross-entropy with the same smoothing; gamma > 0 shrinks the loss of examples the model already
    gets right with confidence.
    """
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    alpha = alpha.to(logits.device, torch.float32) if alpha is not None else None
    if modulation == "true_class":
        # F.cross_entropy's own smoothed CE and softmax: the same numbers as a script written the usual way
        loss = F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
        if gamma:
            p_true = F.softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
            loss = (1.0 - p_true).clamp(min=0.0).pow(gamma) * loss
        return (alpha[labels] * loss if alpha is not None else loss).mean()
    if modulation != "per_class":
        raise ValueError(f"unknown focal modulation {modulation!r}: expected 'true_class' or 'per_class'")
    logp = F.log_softmax(logits, dim=-1)
    targets = smoothed_targets(labels, logits.shape[-1], label_smoothing)
    weight = (1.0 - logp.exp()).clamp(min=0.0).pow(gamma) if gamma else torch.ones_like(logp)
    if alpha is not None:
        weight = weight * alpha
    return -(targets * weight * logp).sum(dim=-1).mean()
