"""Built-in losses: `cross_entropy` and `focal`.

torch is imported inside the functions: loading the registry (which every command does, `runner
ensemble` and `runner compare` included) must not pay for importing torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_serializer, model_validator

from runner.errors import OptionError
from runner.plugins.contexts import LossContext
from runner.plugins.hookspecs import hookimpl
from runner.spec.compat import drop_for_hash, fill_stored
from runner.train.losses import focal_loss

# what focal did before `modulation` existed: a stored spec without the key trained with it, and the
# spec hash leaves it out, so asking for it by name continues those runs (runner.spec.compat)
MODULATION_BEFORE = "per_class"


class CrossEntropyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    class_weights: list[float] | Literal["inverse_frequency"] | None = Field(None,
        description="Per-class weights: a list (one per label), \"inverse_frequency\", or none.")


class FocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    gamma: float = Field(2.0, ge=0.0, description="The focusing exponent gamma; 0 gives cross-entropy.")
    alpha: list[float] | Literal["inverse_frequency"] | float | None = Field(
        None, description=("Per-class weights alpha_c: a list (one per label), one number for every class, "
                           "\"inverse_frequency\" (N / (C * n_c) from the training split, mean 1), or none (1)."))
    modulation: Literal["true_class", "per_class"] = Field(
        "true_class",
        description=(
            "Where the focal factor applies. With p = softmax(logits), y the label, t the label-smoothed "
            "target (t_c = (1 - s)[c = y] + s / C) and CE = -sum_c t_c log p_c: "
            "'true_class' (default; the usual form): loss = alpha_y * (1 - p_y)^gamma * CE. "
            "'per_class': loss = -sum_c alpha_c * t_c * (1 - p_c)^gamma * log p_c (what runner computed "
            "before this option existed; a run stored without it trained so). "
            "Identical without label smoothing; the batch loss is the mean over examples."),
    )

    @model_validator(mode="before")
    @classmethod
    def _modulation_of_stored_options(cls, data: Any, info: ValidationInfo):
        return fill_stored(data, info, "modulation", MODULATION_BEFORE)

    @model_serializer(mode="wrap")
    def _hashed_without_the_old_modulation(self, handler, info):
        return drop_for_hash(handler(self), info, "modulation", MODULATION_BEFORE)


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
    alpha = _per_class(options.alpha, ctx, "alpha")
    gamma, smoothing, modulation = options.gamma, ctx.label_smoothing, options.modulation

    def loss(logits, labels):
        return focal_loss(logits, labels, gamma=gamma, alpha=alpha, label_smoothing=smoothing,
                          modulation=modulation)

    return loss


@hookimpl
def register_losses(register):
    register("cross_entropy", build_cross_entropy, options=CrossEntropyOptions)
    register("focal", build_focal, options=FocalOptions)
