import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, field_validator

import runner


class OddOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = 1

    @field_validator("k")
    @classmethod
    def _odd(cls, v):
        if v % 2 == 0:
            raise TypeError("k must be odd")  # should be ValueError; pydantic lets TypeError through
        return v


@runner.hookimpl
def register_losses(register):
    register("odd_ce", lambda ctx, options: (lambda logits, labels: F.cross_entropy(logits, labels)), options=OddOptions)
