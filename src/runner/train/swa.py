"""Stochastic weight averaging over the last K epoch checkpoints.

The average is streamed: checkpoints are read one tensor at a time from their safetensors files and
summed into a float32 accumulator, so peak memory is about two models (the accumulator and the file
being read), not K, and half-precision weights do not lose bits while being summed. Integer buffers
(position ids, BatchNorm's batch counter) are not averaged: the last checkpoint's are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from torch import nn

from runner.core.records import EpochRecord
from runner.errors import TrainingError
from runner.store import checkpoints
from runner.train import ranks
from runner.train.evaluation import predict_split
from runner.train.job import write_member_info


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


def run_swa(job, trainer, inputs) -> list[int]:
    """Average the member's last K epoch checkpoints into its model, evaluate and store the result
    as checkpoint `swa`, and save it to runs/<run_id>/<member>/swa/. Returns the epochs averaged
    (fewer than K when early stopping came first)."""
    name, k, num_labels = job.member.name, job.resolved.spec.swa.k, job.data.num_labels
    ranks.barrier()  # under torchrun: every rank reads the checkpoints rank 0 has finished writing
    found = checkpoints.epoch_checkpoints(job.owner)
    if not found:
        raise TrainingError(f"member {name}: no epoch checkpoint on disk to average for SWA")
    epochs = sorted(found)[-k:]
    if len(epochs) < k:
        job.say(f"{name}: SWA over {len(epochs)} checkpoint(s), fewer than k = {k} "
                f"(training stopped after epoch {max(found)})")
    model = trainer.model
    load_averaged(model, average_checkpoints([found[e] / "model.safetensors" for e in epochs]))
    if has_batchnorm(model):
        recompute_batchnorm(model, trainer.get_train_dataloader(), trainer.args.device)
        job.say(f"{name}: SWA recomputed BatchNorm statistics over the training split")
    elif job.verbose:
        job.say(f"{name}: SWA averaged epochs {epochs}; the model has no BatchNorm layers, "
                "so there are no statistics to recompute")
    values, predictions = {}, []
    if inputs.valid is not None:  # a refit on train+valid has no validation split
        valid_probs, values = predict_split(trainer, inputs.valid, inputs.metric_fns, "valid", num_labels, name)
        predictions.append(("valid", inputs.valid.order, valid_probs))
    if inputs.test is not None:
        test_probs, test_values = predict_split(trainer, inputs.test, inputs.metric_fns, "test", num_labels, name)
        values.update(test_values)
        predictions.append(("test", inputs.test.order, test_probs))
    job.store.log_checkpoint(job.run_id, name, "swa", None, EpochRecord(0, values).rows(), predictions)
    job.store.set_swa_epochs(job.run_id, name, epochs)
    if not ranks.writes():
        return epochs
    if job.owner.swa.exists():
        checkpoints.remove(job.owner.swa, job.owner)
    trainer.save_model(str(job.owner.swa))
    if (job.owner.swa / "training_args.bin").exists():  # a pickle: never part of what runner ships
        checkpoints.remove(job.owner.swa / "training_args.bin", job.owner)
    write_member_info(job, job.owner.swa)
    (job.owner.swa / "selection.json").write_text(json.dumps({"swa_epochs": epochs, "run_id": job.run_id,
                                                              "member": name}, indent=2))
    return epochs
