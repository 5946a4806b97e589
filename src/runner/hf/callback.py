"""`StoreCallback` for any Hugging Face `Trainer` script: what `runner apply` stores, from the script's own training.

It is runner's own epoch callback (runner.train.callback: the train loss and its checks, one
transaction per epoch once the checkpoint is on disk, pruning what neither selection nor SWA needs),
given the script's splits: at each epoch's save it predicts every split with the script's model,
links the model files of Trainer's `checkpoint-*` folder into the member's folder (hard links where
the file system allows: no copy, and Trainer's `save_total_limit` cannot take them away), and stores
the epoch. At the end of training it averages the last `swa` checkpoints (on a copy of the model: the
script's model is left as Trainer left it), copies the selected epoch to `selected/` and marks the
member finished. The script's loss (`compute_loss`, `compute_loss_func`) is never touched: the
validation loss stored is the one Trainer computed with it. Trainer's pickles (`optimizer.pt`,
`training_args.bin`, ...) are neither linked nor read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from runner.core.records import EpochRecord
from runner.errors import InputError
from runner.hf.averaged import store_swa
from runner.hf.record import (
    MemberRun,
    check_name,
    fail_member,
    finish_member,
    link_checkpoint,
    open_member,
    selection_of,
)
from runner.hf.splits import ScriptSplit, predict, read_split
from runner.plugins.registry import load_registry
from runner.store import Store, checkpoints
from runner.train import callback
from runner.train.evaluation import split_metrics

SPLIT_NAMES = ("valid", "test")


class StoreCallback(callback.StoreCallback):
    """Stores every epoch of the Trainer it is added to as one member of the run `name` in `store`.

    `labels`: the label names, in label-id order. `splits`: {"valid": ds, "test": ds} (valid required),
    the tokenized datasets with `labels` the script evaluates. `texts`: their texts, for the `examples`
    table (else decoded by the Trainer's tokenizer). `member`: this script's member name (scripts
    sharing `name` and splits are members of one run). `metric`: what selects the epoch (an `eval_`
    metric runner computes, or `eval_loss`); `swa`: average the last K epochs at the end (0: no).
    Trainer must save every epoch (`save_strategy="epoch"`, safetensors).
    """

    def __init__(self, store: str | os.PathLike = "results.duckdb", name: str = "trainer", *,
                 labels: Sequence[str], splits: Mapping[str, Any], texts: Mapping[str, Sequence[str]] | None = None,
                 member: str = "member", metric: str = "eval_accuracy", greater_is_better: bool | None = None,
                 swa: int = 0, say=print):
        check_name("name", name)
        check_name("member", member)
        labels = [str(x) for x in labels]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise InputError(f"StoreCallback(labels={labels!r}): give at least two distinct label names, in id order")
        unknown = sorted(set(splits) - set(SPLIT_NAMES)) + sorted(set(texts or {}) - set(splits))
        if "valid" not in splits or unknown:
            raise InputError(f"StoreCallback(splits={sorted(splits)!r}, texts=...): splits are 'valid' (required: "
                             f"it selects the epoch) and 'test'; texts name the same splits; not {unknown}")
        if not isinstance(swa, int) or swa < 0:
            raise InputError(f"StoreCallback(swa={swa!r}): the number of last epochs to average, 0 for none")
        self.registry = load_registry()
        self.labels, self.raw_splits, self.raw_texts = labels, dict(splits), dict(texts or {})
        self.name, self.selection = name, selection_of(metric, greater_is_better)
        metric_fns = self.registry.metric_fns()
        if self.selection["metric"] != "eval_loss" and self.selection["metric"][5:] not in metric_fns:
            raise InputError(f"StoreCallback(metric={metric!r}): not a metric runner computes; one of "
                             f"{', '.join(['eval_loss', *(f'eval_{k}' for k in metric_fns)])}")
        store = Store(store)
        # the run and its member folder are found when training starts (on_train_begin)
        super().__init__(store=store, run_id="", owner=checkpoints.MemberDir(checkpoints.runs_root(store), "-", member), metric_fns=metric_fns, computer=None,
                         valid=None, test=None, num_labels=len(labels), selection_key=self.selection["metric"],
                         greater_is_better=self.selection["greater_is_better"], swa_k=swa, history={})
        self.say = say
        self.run: MemberRun | None = None
        self.splits: dict[str, ScriptSplit] = {}
        self._eval_loss: dict[int, float] = {}
        self._collate = None
        self._tokenizer = None

    # -- Trainer's events ------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, processing_class=None, train_dataloader=None,
                       **kwargs):
        if str(getattr(args.save_strategy, "value", args.save_strategy)) != "epoch":
            raise InputError(f"StoreCallback: TrainingArguments(save_strategy={args.save_strategy!r}); the callback "
                             "stores each epoch once its checkpoint is saved: use save_strategy='epoch'")
        self._tokenizer = processing_class
        self.splits = {name: read_split(name, ds, self.raw_texts.get(name), processing_class, self.num_labels)
                       for name, ds in self.raw_splits.items()}
        self._collate = getattr(train_dataloader, "collate_fn", None) or _padding_collator(processing_class)
        resumed = int(round(state.epoch)) if state.global_step > 0 else None
        self.run = open_member(self.store, self.name, self.member, "trainer-script", self.labels,
                               {n: s.as_split() for n, s in self.splits.items()}, self.selection,
                               _model_name(model), int(args.seed), {}, resumed, self.say)
        self.run_id, self.owner, self.history = self.run.run_id, self.run.owner, self.run.history

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # The loss Trainer computed with the script's own objective; runner's metrics come from the
        # probabilities it predicts at the save (runner.hf.splits.predict).
        if metrics and "eval_loss" in metrics:
            self._eval_loss[int(round(state.epoch))] = float(metrics["eval_loss"])

    def on_save(self, args, state, control, model=None, **kwargs):
        epoch = int(round(state.epoch))
        if self.run is None or abs(state.epoch - epoch) > 1e-6:  # not an epoch's end
            return
        link_checkpoint(Path(args.output_dir) / f"{checkpoints.CHECKPOINT_PREFIX}{state.global_step}", self.owner)
        values: dict[str, float] = {}
        if epoch in self._eval_loss:
            values["eval_loss"] = self._eval_loss.pop(epoch)
        predictions = []
        for name, split in self.splits.items():
            probs = self._predict(model, split, args)
            values.update(split_metrics(self.metric_fns, probs, split.labels, name))
            predictions.append((name, split.index, probs))
        values = {"train_loss": self._train_loss, **values}
        self._train_loss = None
        self.commit(callback.PendingEpoch(EpochRecord(epoch, {k: v for k, v in values.items() if v is not None}),
                                          predictions))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.run is None:
            return
        try:
            swa_epochs = store_swa(self.run, model, self._tokenizer, self.swa_k, self.splits, self.metric_fns,
                                   lambda m, split: self._predict(m, split, args), self._model_info(model), self.say)
            finish_member(self.run, self.registry, self._model_info(model), bool(swa_epochs), self.say)
        except BaseException as e:
            fail_member(self.run, f"{type(e).__name__}: {e}")
            raise
        finally:
            self.run = None

    # -- helpers ---------------------------------------------------------------------------------

    def _model_info(self, model) -> dict:
        """What runner.json says of the member's checkpoints besides the backbone (`hf`)."""
        max_length = max(len(item["input_ids"]) for s in self.splits.values() for item in s.items)
        return {"label_names": self.labels, "max_length": max_length, "model": _model_name(model)}

    def _predict(self, model, split: ScriptSplit, args):
        return predict(model, split, self._collate, args.per_device_eval_batch_size, self.num_labels, self.member)

def _model_name(model) -> str | None:
    name = getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(name) if name else None


def _padding_collator(tokenizer):
    from transformers import DataCollatorWithPadding

    if tokenizer is None:
        raise InputError("StoreCallback: the Trainer has neither a data collator nor a processing_class to pad "
                         "the splits with")
    return DataCollatorWithPadding(tokenizer)

