"""A loss plugin whose options model checks its own values."""
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator

import runner


class CappedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    floor: float = 0.0
    cap: float = 10.0

    @model_validator(mode="after")
    def _floor_below_cap(self):
        if self.floor >= self.cap:
            raise ValueError(f"floor ({self.floor}) must be below cap ({self.cap})")
        return self


def build_capped(ctx, options):
    return lambda logits, labels: F.cross_entropy(logits, labels).clamp(options.floor, options.cap)


@runner.hookimpl
def register_losses(register):
    register("capped_ce", build_capped, options=CappedOptions)
