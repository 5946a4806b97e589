"""Training one member with Hugging Face `Trainer`, storing every epoch as it goes.

Read top to bottom: `prepare_member` builds the model and tokenizer (the backbone plugin), the loss
(the loss plugin) and the tokenized splits; `make_trainer` builds the `TrainingArguments` and the
`Trainer` itself. The validation dry run (runner.dryrun) calls the very same functions, so what
`validate` checks is what `apply` trains. `train_member` then lets Trainer train with an evaluation
and a checkpoint every epoch (runner.callback stores each), averages the last K checkpoints
(runner.swa) and copies the selected epoch out (runner.checkpoints).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import PreTrainedTokenizerBase

from . import checkpoints, ddp
from .backbones import BackboneContext, write_runner_json
from .callback import StoreCallback
from .data import PreparedData
from .errors import OptionError, SpecError, TrainingError
from .evaluation import EncodedSplit, MetricComputer, encode
from .losses import LossContext
from .plugins import Registry
from .progress import TrainingProgress
from .records import EpochRecord, MemberHistory
from .selection import best_epoch
from .spec import ResolvedMember, ResolvedSpec
from .store import Store


def build_loss(member: ResolvedMember, registry: Registry, data: PreparedData, spec_path: Path):
    comp = registry.loss(member.loss.name)
    ctx = LossContext(num_labels=data.num_labels, class_counts=data.class_counts("train"),
                      label_smoothing=member.loss.label_smoothing)
    try:
        return comp.build(ctx, member.loss_options)
    except OptionError as e:
        raise SpecError(spec_path, [(f"{member.loss_loc}.{e.key}", e.message)]) from None


def build_model(member: ResolvedMember, resolved: ResolvedSpec, data: PreparedData, registry: Registry,
                adapted: Path | None = None):
    """(model, tokenizer) from the member's backbone plugin, seeded; from the `adapted` folder (runner.adapt)
    when there is one."""
    from transformers import set_seed

    set_seed(member.seed)
    ctx = BackboneContext(
        model=member.model, num_labels=data.num_labels, label_names=data.label_names,
        train_texts=data.splits["train"].texts, special_tokens=list(resolved.spec.data.special_tokens),
        max_length=resolved.spec.data.max_length, seed=member.seed, adapted=adapted,
    )
    return registry.backbone(member.backbone).build(ctx, member.options)


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


@dataclass
class MemberInputs:
    """What `Trainer` trains with, built the same way for the dry run and for training."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    train: EncodedSplit
    valid: EncodedSplit | None  # None for a refit on train+valid, which has no validation split
    test: EncodedSplit | None
    metric_fns: dict[str, Callable]
    computer: MetricComputer
    compute_loss: Callable


def prepare_member(member: ResolvedMember, resolved: ResolvedSpec, data: PreparedData,
                   registry: Registry, adapted: Path | None = None, store_path: Path | None = None,
                   preview: int | None = None) -> MemberInputs:
    """The member's model, tokenizer, tokenized splits, metrics and loss.

    The splits come from runner.tokenized's cache: in process, and with `store_path` also from
    `tokenized/` beside the store. `preview`: only the first `preview` examples of each split,
    tokenized now and not cached: the dry run's, which needs a few batches, not the whole data.
    """
    from . import tokenized
    from .data import Split

    model, tokenizer = build_model(member, resolved, data, registry, adapted)
    loss_fn = build_loss(member, registry, data, resolved.path)
    num_labels = data.num_labels
    max_len = resolved.spec.data.max_length
    splits = data.splits
    if preview is not None:
        splits = {name: Split(s.texts[:preview], s.labels[:preview] if s.labels is not None else None)
                  for name, s in splits.items()}
        encoded = {name: tokenized.tokenize(tokenizer, s.texts, max_len) for name, s in splits.items()}
    else:
        from .ddp import writes

        root = tokenized.root_for(store_path) if store_path is not None else None
        encoded, _ = tokenized.encoded_splits(tokenizer, data, max_len, root, store_path, write=writes())

    def split(name: str, sort: bool) -> EncodedSplit | None:
        if name not in splits:
            return None
        return encode(tokenizer, splits[name], max_len, sort_by_length=sort, encoded=encoded[name])

    train_ds, valid_ds, test_ds = split("train", False), split("valid", True), split("test", True)
    metric_fns = registry.metric_fns()

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        if logits.ndim != 2 or logits.shape[-1] != num_labels:
            raise TrainingError(f"member {member.name}: the model returned logits of shape {tuple(logits.shape)}, "
                                f"but there are {num_labels} labels; its head must output (batch, {num_labels})")
        loss = loss_fn(logits, labels)
        if num_items_in_batch is not None:
            # Trainer takes what a compute_loss_func returns as normalised over the whole optimizer step
            # (every gradient-accumulation micro-batch, on every DDP process): it neither divides it by
            # the accumulation steps nor undoes DDP's averaging. A loss plugin returns its batch's mean,
            # so weight it by the batch's share of the step's examples (exactly 1.0 for one batch in one
            # process, which leaves the loss bit for bit as it was).
            loss = loss * (labels.shape[0] / num_items_in_batch)
        return loss

    return MemberInputs(model, tokenizer, train_ds, valid_ds, test_ds, metric_fns,
                        MetricComputer(metric_fns, num_labels, member.name), compute_loss)


def make_trainer(member: ResolvedMember, resolved: ResolvedSpec, inputs: MemberInputs, output_dir: Path,
                 callbacks: list):
    """The member's `Trainer`, with early stopping when the spec asks for it."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer
    from transformers.trainer_callback import PrinterCallback

    patience = resolved.spec.selection.early_stopping_patience
    if patience and inputs.valid is not None:
        callbacks = [*callbacks, EarlyStoppingCallback(early_stopping_patience=patience)]
    args = training_arguments(member, resolved, output_dir, evaluate=inputs.valid is not None)
    if ddp.distributed():
        quiet_replicas(args, inputs.model)
    trainer = _in_order(Trainer)(
        model=inputs.model,
        args=args,
        train_dataset=inputs.train,
        eval_dataset=inputs.valid,
        processing_class=inputs.tokenizer,
        data_collator=DataCollatorWithPadding(inputs.tokenizer),
        compute_metrics=inputs.computer,
        compute_loss_func=inputs.compute_loss,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # with tqdm off, Trainer would print every log dict
    return trainer


def quiet_replicas(args, model) -> None:
    """Under torchrun: ranks other than 0 log no more than rank 0 (Trainer would set them back to
    warnings), and a Hugging Face model, which uses every parameter, skips DDP's search for unused ones
    (a per-step graph walk that warns on every rank) unless [train.trainer_args] asks for it."""
    from transformers import PreTrainedModel

    if args.log_level_replica == "warning":  # Trainer's default
        args.log_level_replica = "error"
    if args.ddp_find_unused_parameters is None and isinstance(model, PreTrainedModel):
        args.ddp_find_unused_parameters = False


def _in_order(trainer_class):
    """`Trainer` whose evaluation and prediction read a split in its own order, always, and whose
    length-grouped training batches come in random order (runner.sampling).

    With `train_sampling_strategy = "group_by_length"`, transformers 5 also evaluates through a
    *shuffled* length-grouped sampler; runner stores each prediction under the example index of its
    position (`EncodedSplit.order`), and its evaluation splits are sorted by length already, so a
    shuffled order would store every probability against the wrong example.
    """
    from torch.utils.data import SequentialSampler

    from .sampling import shuffled

    class InOrder(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            # length-grouped batches come in random order (runner.sampling), not longest to shortest
            return shuffled(super()._get_train_sampler(train_dataset))

        def _get_eval_sampler(self, eval_dataset):
            if eval_dataset is not None and self.args.train_sampling_strategy == "group_by_length":
                # one process: in order; several: None lets the distributed loader shard it in order
                return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
            return super()._get_eval_sampler(eval_dataset)

    return InOrder


@dataclass
class MemberJob:
    """Everything needed to train one member of a run."""

    run_id: str
    member: ResolvedMember
    resolved: ResolvedSpec
    data: PreparedData
    registry: Registry
    store: Store
    owner: checkpoints.MemberDir
    progress: TrainingProgress | None = None
    resume_from: Path | None = None
    history: dict[int, EpochRecord] = field(default_factory=dict)
    say: Callable[[str], None] = print
    verbose: bool = False
    on_epoch: Callable[[str, EpochRecord], None] | None = None  # after each stored epoch (a sweep's pruner)
    adaptation: Any = None  # runner.adapt.Adaptation: adapt the encoder first ([adapt]), or None


def train_member(job: MemberJob) -> int:
    """Train one member; returns the selected epoch. Raises TrainingError on a non-finite loss."""
    from .swa import run_swa

    m, resolved, data = job.member, job.resolved, job.data
    swa_k = resolved.spec.swa.k
    key = f"eval_{resolved.metric}"

    def on_epoch(record: EpochRecord) -> None:
        error = None
        if ddp.writes():  # hooks, progress and a sweep's pruner run where the store is written
            try:
                job.registry.hook.on_epoch_end(run_id=job.run_id, member=m.name, epoch=record.epoch,
                                               metrics=dict(record.metrics))
                if job.progress is not None:
                    job.progress.epoch_done(m.name, record.epoch, dict(record.metrics), resolved.metric)
                if job.on_epoch is not None:
                    job.on_epoch(m.name, record)
            except Exception as e:
                if not ddp.distributed():
                    raise
                error = e
        error = ddp.agree(error)  # under torchrun, a pruned trial stops every rank at the same epoch
        if error is not None:
            raise error

    adapted = None
    if job.adaptation is not None:  # from the cache, or trained now (runner.adapt)
        from .adapt import ensure

        adapted = ensure(job.adaptation, job, job.say)
    inputs = prepare_member(m, resolved, data, job.registry, adapted, store_path=job.store.path)
    callback = StoreCallback(
        store=job.store, run_id=job.run_id, owner=job.owner, metric_fns=inputs.metric_fns,
        computer=inputs.computer, valid=inputs.valid, test=inputs.test, num_labels=data.num_labels,
        selection_key=key, greater_is_better=resolved.greater_is_better, swa_k=swa_k, history=job.history,
        on_epoch=on_epoch, progress=job.progress,
    )
    trainer = make_trainer(m, resolved, inputs, job.owner.checkpoints, [callback])
    callback.bind(trainer)
    if job.progress is not None:
        job.progress.member_started(m.name, m.train.epochs, len(job.history))
    trainer.train(resume_from_checkpoint=str(job.resume_from) if job.resume_from else None)

    history = MemberHistory.of(m.name, job.history.values())
    if inputs.valid is None:  # nothing to select on (a refit on train+valid): the last epoch
        selected = max(job.history, default=None)
    else:
        selected = best_epoch(history, key, resolved.greater_is_better)
    if selected is None:
        raise TrainingError(f"member {m.name}: no epoch produced a finite {key}")
    if swa_k:
        run_swa(job, trainer, inputs)
    if ddp.writes():
        checkpoints.save_selected(job.owner, selected, lambda folder: write_member_info(job, folder))
    return selected


def write_member_info(job: MemberJob, directory: Path) -> None:
    """runner.json: what `load_checkpoint` needs to rebuild this member without the spec."""
    backbone = job.registry.backbone(job.member.backbone)
    write_runner_json(directory, job.member.backbone, job.member.options_dict(), job.data.label_names,
                      job.resolved.spec.data.max_length, job.member.model, plugin=backbone.plugin,
                      origin=backbone.origin)
