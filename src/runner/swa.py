"""Stochastic weight averaging over the last K epoch checkpoints.

The average is streamed: checkpoints are read one tensor at a time from their safetensors files and
summed into a float32 accumulator, so peak memory is about two models (the accumulator and the file
being read), not K, and half-precision weights do not lose bits while being summed. Integer buffers
(position ids, BatchNorm's batch counter) are not averaged: the last checkpoint's are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from torch import nn


def average_checkpoints(files: list[Path]) -> dict[str, torch.Tensor]:
    """The uniform average of the tensors in `files` (safetensors), in each tensor's own dtype."""
    if not files:
        raise ValueError("no checkpoints to average")
    acc: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    seen: dict[str, int] = {}
    n = len(files)
    for i, path in enumerate(files):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                if not t.is_floating_point():
                    if i == n - 1:
                        acc[key] = t
                    continue
                if i == 0:
                    dtypes[key] = t.dtype
                    # float32 at least, so half precision keeps its bits; float64 stays float64
                    acc[key] = t.to(torch.promote_types(t.dtype, torch.float32), copy=True)
                else:
                    if key not in acc:
                        raise ValueError(f"{path}: tensor {key!r} is not in the first checkpoint {files[0]}")
                    acc[key].add_(t.to(acc[key].dtype))
                seen[key] = seen.get(key, 0) + 1
                del t
    short = [key for key in dtypes if seen[key] != n]
    if short:  # dividing by n would silently shrink that tensor
        raise ValueError(f"tensor {short[0]!r} is in {seen[short[0]]} of the {n} checkpoints, not all of them")
    for key, dtype in dtypes.items():
        acc[key] = acc[key].div_(n).to(dtype)
    return acc


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[dict], device: torch.device) -> None:
    """What `torch.optim.swa_utils.update_bn` does, for models that take keyword inputs: reset the
    running statistics and run the training data through once in train mode with a cumulative average."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = {}
    for bn in bns:
        bn.reset_running_stats()
        momenta[bn] = bn.momentum
        bn.momentum = None  # None = cumulative moving average over all batches
    was_training = model.training
    model.train()
    for batch in batches:
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        model(**inputs)
    for bn in bns:
        bn.momentum = momenta[bn]
    model.train(was_training)


def load_averaged(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load averaged weights into `model`; keys a checkpoint leaves out must be tied weights."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if isinstance(tied, dict):
        tied = set(tied)
    missing = [k for k in missing if k not in tied and not k.endswith("position_ids")]
    if unexpected or missing:
        raise ValueError(f"averaged weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
