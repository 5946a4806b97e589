"""What a loss plugin receives (`LossContext`), and the focal-loss maths behind the built-in `focal`.

A loss plugin's `build(ctx, options)` returns a plain function of logits and integer labels that
returns the batch mean, so it plugs into Hugging Face `Trainer` through `compute_loss_func` and can
be unit-tested without a model. The built-in losses are registered in runner.builtins.losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a loss is computed, not when the registry is loaded
    import torch


@dataclass
class LossContext:
    num_labels: int
    class_counts: list[int] = field(default_factory=list)  # per label, in the training split
    label_smoothing: float = 0.0


def smoothed_targets(labels: torch.Tensor, num_labels: int, smoothing: float) -> torch.Tensor:
    """One-hot targets mixed with the uniform distribution, as `F.cross_entropy(label_smoothing=)` does."""
    import torch
    import torch.nn.functional as F

    onehot = F.one_hot(labels, num_labels).to(torch.float32)
    return onehot * (1.0 - smoothing) + smoothing / num_labels


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, *, gamma: float, alpha: torch.Tensor | None,
               label_smoothing: float = 0.0) -> torch.Tensor:
    """Multi-class focal loss (Lin et al. 2017) with per-class alpha and label smoothing.

    loss_i = -sum_c alpha_c * t_ic * (1 - p_ic)^gamma * log p_ic, with t the (smoothed) target
    distribution. With gamma = 0, alpha = 1 it is exactly cross-entropy with the same smoothing;
    gamma > 0 shrinks the loss of examples the model already gets right with confidence.
    """
    import torch
    import torch.nn.functional as F

    logp = F.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    targets = smoothed_targets(labels, logits.shape[-1], label_smoothing)
    weight = (1.0 - p).clamp(min=0.0).pow(gamma) if gamma else torch.ones_like(p)
    if alpha is not None:
        weight = weight * alpha.to(logits.device, torch.float32)
    return -(targets * weight * logp).sum(dim=-1).mean()
