"""A member's `TrainingArguments`: the spec's `[train]` fields, runner's defaults per device, then
`[train.trainer_args]` on top. Training, adaptation and the dry run all take their arguments here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from runner.spec import ResolvedMember, ResolvedSpec


def precision_args(precision: str) -> dict[str, bool]:
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return {}
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    if precision in ("fp16", "bf16"):
        return {precision: True}
    return {}


def loader_args(resolved: ResolvedSpec) -> dict[str, Any]:
    """DataLoader defaults (`[train.trainer_args]` overrides each): on CUDA pinned memory and
    min(4, CPUs per member) persistent worker processes, so batches are collated while the GPU
    computes; on CPU neither, since the workers would take cores from the training itself (on 2
    cores it trains faster without them). None of it changes a number."""
    if not torch.cuda.is_available():
        return {"dataloader_pin_memory": False, "dataloader_num_workers": 0}
    workers = min(4, cpus_per_member(resolved))
    return {"dataloader_pin_memory": True, "dataloader_num_workers": workers,
            "dataloader_persistent_workers": workers > 0}


def cpus_per_member(resolved: ResolvedSpec) -> int:
    """The CPUs one member may use: on Ray, `[compute] cpus_per_member` (what its task reserved), or
    that setting wherever the spec gives it; else the CPUs this process may run on."""
    compute = getattr(resolved.spec, "compute", None)
    if compute is not None and (compute.backend == "ray" or "cpus_per_member" in compute.model_fields_set):
        return max(1, int(compute.cpus_per_member))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def training_arguments(member: ResolvedMember, resolved: ResolvedSpec, output_dir: Path, evaluate: bool = True):
    """`TrainingArguments` for a member: the spec's fields, then `[train.trainer_args]` on top.
    `evaluate=False` (no validation split: a refit on train+valid) turns Trainer's evaluation off."""
    from transformers import TrainingArguments

    t = member.train
    kwargs = dict(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.batch_size * 2,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup if t.warmup < 1 else int(t.warmup),
        weight_decay=t.weight_decay,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_grad_norm=t.max_grad_norm,
        seed=member.seed,
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="epoch",
        logging_strategy="epoch",
        logging_nan_inf_filter=False,  # a NaN loss must reach our check, not be averaged away
        metric_for_best_model=f"eval_{resolved.metric}",
        greater_is_better=resolved.greater_is_better,
        load_best_model_at_end=False,
        # runner owns the loss, so it tells Trainer where the labels are: without this Trainer infers
        # them from the model's forward signature and a plugin model without a `labels` parameter
        # would get no evaluation loss at all
        label_names=["labels"],
        # a resumed member keeps its early-stopping patience count instead of starting it again
        restore_callback_states_from_checkpoint=True,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        **loader_args(resolved),
        **precision_args(t.precision),
    )
    if t.group_by_length:
        kwargs["train_sampling_strategy"] = "group_by_length"
    if t.compile:
        kwargs["torch_compile"] = True
    kwargs.update(t.trainer_args)
    if not kwargs.get("dataloader_num_workers") and "dataloader_persistent_workers" not in t.trainer_args:
        kwargs.pop("dataloader_persistent_workers", None)  # DataLoader refuses it without workers
    return TrainingArguments(**kwargs)
