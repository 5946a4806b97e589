"""What `Trainer` trains a member with, built the same way for the dry run and for training.

Read top to bottom: `prepare_member` builds the model and tokenizer (the backbone plugin), the loss
(the loss plugin) and the tokenized splits; `make_trainer` builds the `TrainingArguments`
(runner.train.arguments) and the `Trainer` itself. The validation dry run (runner.train.dryrun) calls
the very same functions, so what `validate` checks is what `apply` trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import PreTrainedTokenizerBase

from runner.data import tokenized
from runner.data.prepare import PreparedData, Split
from runner.errors import OptionError, SpecError, TrainingError
from runner.plugins.contexts import BackboneContext, LossContext
from runner.plugins.registry import Registry
from runner.spec import ResolvedMember, ResolvedSpec
from runner.train import ranks
from runner.train.arguments import training_arguments
from runner.train.evaluation import EncodedSplit, MetricComputer, encode
from runner.train.sampling import shuffled


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
    """(model, tokenizer) from the member's backbone plugin, seeded; from the `adapted` folder (runner.train.adapt)
    when there is one."""
    from transformers import set_seed

    set_seed(member.seed)
    ctx = BackboneContext(
        model=member.model, num_labels=data.num_labels, label_names=data.label_names,
        train_texts=data.splits["train"].texts, special_tokens=list(resolved.spec.data.special_tokens),
        max_length=resolved.spec.data.max_length, seed=member.seed, adapted=adapted,
    )
    return registry.backbone(member.backbone).build(ctx, member.options)


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

    The splits come from runner.data.tokenized's cache: in process, and with `store_path` also from
    `tokenized/` beside the store. `preview`: only the first `preview` examples of each split,
    tokenized now and not cached: the dry run's, which needs a few batches, not the whole data.
    """
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
        root = tokenized.root_for(store_path) if store_path is not None else None
        encoded, _ = tokenized.encoded_splits(tokenizer, data, max_len, root, store_path, write=ranks.writes())

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
    if ranks.distributed():
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
    length-grouped training batches come in random order (runner.train.sampling).

    With `train_sampling_strategy = "group_by_length"`, transformers 5 also evaluates through a
    *shuffled* length-grouped sampler; runner stores each prediction under the example index of its
    position (`EncodedSplit.order`), and its evaluation splits are sorted by length already, so a
    shuffled order would store every probability against the wrong example.
    """
    from torch.utils.data import SequentialSampler

    class InOrder(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            # length-grouped batches come in random order (runner.train.sampling), not longest to shortest
            return shuffled(super()._get_train_sampler(train_dataset))

        def _get_eval_sampler(self, eval_dataset):
            if eval_dataset is not None and self.args.train_sampling_strategy == "group_by_length":
                # one process: in order; several: None lets the distributed loader shard it in order
                return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
            return super()._get_eval_sampler(eval_dataset)

    return InOrder
