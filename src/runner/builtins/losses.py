"""Built-in losses: `cross_entropy` and `focal`.

torch is imported inside the functions: loading the registry (which every command does, `runner
ensemble` and `runner compare` included) must not pay for importing torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from runner.errors import OptionError
from runner.hookspecs import hookimpl
from runner.losses import LossContext


class CrossEntropyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    class_weights: list[float] | Literal["inverse_frequency"] | None = Field(None,
        description="Per-class weights: a list (one per label), \"inverse_frequency\", or none.")


class FocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    gamma: float = Field(2.0, ge=0.0, description="Focusing parameter: 0 is cross-entropy.")
    alpha: list[float] | Literal["inverse_frequency"] | float | None = Field(None,
        description="Per-class weights: a list (one per label), one number for all, \"inverse_frequency\", or none.")


def _per_class(value, ctx: LossContext, key: str):
    """A per-class weight vector (a tensor) from a list, a scalar, "inverse_frequency" or None."""
    import torch

    if value is None:
        return None
    if value == "inverse_frequency":
        counts = torch.tensor(ctx.class_counts, dtype=torch.float32).clamp(min=1)
        w = counts.sum() / (len(counts) * counts)  # mean weight 1 under the training distribution
        return w
    if isinstance(value, (int, float)):
        return torch.full((ctx.num_labels,), float(value))
    if len(value) != ctx.num_labels:
        raise OptionError(key, f"has {len(value)} values but there are {ctx.num_labels} labels; give one per label")
    if any(v < 0 for v in value):
        raise OptionError(key, "values must be non-negative")
    return torch.tensor(value, dtype=torch.float32)


def build_cross_entropy(ctx: LossContext, options: CrossEntropyOptions):
    import torch.nn.functional as F

    weight = _per_class(options.class_weights, ctx, "class_weights")
    smoothing = ctx.label_smoothing

    def loss(logits, labels):
        w = weight.to(logits.device) if weight is not None else None
        return F.cross_entropy(logits.float(), labels, weight=w, label_smoothing=smoothing)

    return loss


def build_focal(ctx: LossContext, options: FocalOptions):
    from runner.losses import focal_loss

    alpha = _per_class(options.alpha, ctx, "alpha")
    gamma, smoothing = options.gamma, ctx.label_smoothing

    def loss(logits, labels):
        return focal_loss(logits, labels, gamma=gamma, alpha=alpha, label_smoothing=smoothing)

    return loss


@hookimpl
def register_losses(register):
    register("cross_entropy", build_cross_entropy, options=CrossEntropyOptions)
    register("focal", build_focal, options=FocalOptions)
