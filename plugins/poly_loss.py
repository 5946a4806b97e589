"""An example loss plugin: Poly-1 loss (Leng et al., 2022, "PolyLoss").

Poly-1 adds epsilon * (1 - p_t) to cross-entropy, where p_t is the probability the model gives the
true class. A positive epsilon keeps pushing on examples the model already gets right (the opposite
of focal loss); a negative one backs off from them. One line of maths, one option, a good template.
"""

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from runner import hookimpl


class PolyOptions(BaseModel):
    # extra="forbid": a typo in the spec's [loss] table fails at `runner validate`, not at epoch 3
    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(1.0, ge=-1.0, description="weight of the (1 - p_t) term")


def build_poly1(ctx, options: PolyOptions):
    """Called once per member: `ctx` has num_labels, class_counts and label_smoothing."""
    epsilon, smoothing = options.epsilon, ctx.label_smoothing

    def loss(logits, labels):
        ce = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing, reduction="none")
        p_true = F.softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)
        return (ce + epsilon * (1.0 - p_true)).mean()

    return loss


@hookimpl
def register_losses(register):
    register("poly1", build_poly1, options=PolyOptions)
