"""Training one member with Hugging Face `Trainer`, storing every epoch as it goes.

Read top to bottom: tokenize the splits, build the loss and the `TrainingArguments` from the spec,
then let `Trainer` train with an evaluation and a checkpoint every epoch. `StoreCallback` hooks into
Trainer's own events: `on_log` picks up the epoch's train loss, `on_evaluate` (after the validation
pass) predicts the test split too, and `on_save` (after the checkpoint is on disk) writes the epoch's
metrics and every example's probabilities to the store in one transaction, then prunes checkpoints
that neither selection nor SWA can need. A checkpoint is therefore always on disk before its rows are
committed, which is what makes resuming after a crash safe.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .backbones import BackboneContext, write_runner_json
from .data import PreparedData, Split
from .errors import OptionError, SpecError, TrainingError
from .losses import LossContext

CHECKPOINT_PREFIX = "checkpoint-"


# -- data -----------------------------------------------------------------------------------------


class EncodedSplit(torch.utils.data.Dataset):
    """Tokenized examples; `order` maps a position here to the example's index in its split.

    Evaluation splits are sorted by length so that dynamic padding pads little: prediction of the
    test split every epoch then costs a fraction of an epoch of training.
    """

    def __init__(self, encodings: dict[str, list], labels: np.ndarray | None, order: np.ndarray):
        self.encodings = encodings
        self.labels = labels
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {k: v[i] for k, v in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        return item


def encode(tokenizer, split: Split, max_length: int, sort_by_length: bool) -> EncodedSplit:
    enc = tokenizer(split.texts, truncation=True, max_length=max_length)
    enc = {k: list(v) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    order = np.arange(len(split))
    if sort_by_length:
        order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
        enc = {k: [v[i] for i in order] for k, v in enc.items()}
    labels = split.labels[order] if split.labels is not None else None
    return EncodedSplit(enc, labels, order)


# -- metrics ----------------------------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class MetricComputer:
    """`compute_metrics` for Trainer: every registered metric, keeping the probabilities it saw."""

    def __init__(self, metrics: dict[str, Callable]):
        self.metrics = metrics
        self.last_probs: np.ndarray | None = None

    def __call__(self, eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        probs = softmax(np.asarray(logits))
        self.last_probs = probs
        labels = np.asarray(eval_pred.label_ids)
        return {name: float(fn(probs, labels)) for name, fn in self.metrics.items()}


def compute_all(metrics: dict[str, Callable], probs: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
    if labels is None:
        return {}
    return {name: float(fn(probs, labels)) for name, fn in metrics.items()}


def predict_split(trainer, ds: "EncodedSplit", metrics: dict[str, Callable], prefix: str):
    """Probabilities for every example of `ds` and its metrics as {"<prefix>_<name>": value}.

    The prediction runs in a forked random state: a DataLoader draws from torch's global generator
    when it starts, so predicting the test split would otherwise change the next epochs' shuffling
    and dropout, and a spec with a test split would train differently from one without.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        out = trainer.predict(ds, metric_key_prefix=prefix)
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    probs = softmax(np.asarray(logits))
    row = {f"{prefix}_loss": float(out.metrics[f"{prefix}_loss"])} if f"{prefix}_loss" in out.metrics else {}
    row.update({f"{prefix}_{k}": v for k, v in compute_all(metrics, probs, ds.labels).items()})
    return probs, row


# -- the member -------------------------------------------------------------------------------------


@dataclass
class MemberJob:
    """Everything needed to train one member of a run."""

    run_id: str
    member: Any  # runner.spec.ResolvedMember
    resolved: Any  # runner.spec.ResolvedSpec
    data: PreparedData
    registry: Any
    store: Any
    out_dir: Path  # runs/<run_id>/<member>/
    swa_k: int = 0
    progress: Any = None  # runner.progress.Progress-like, or None
    resume_from: Path | None = None
    history: dict[int, dict[str, float]] = field(default_factory=dict)
    member_metrics: dict[str, Callable] = field(default_factory=dict)
    say: Callable[[str], None] = print


def build_loss(job_member, registry, data: PreparedData, spec_path: Path):
    comp = registry.get("losses", job_member.loss.name)
    ctx = LossContext(num_labels=data.num_labels, class_counts=data.class_counts("train"),
                      label_smoothing=job_member.loss.label_smoothing)
    try:
        return comp.obj(ctx, job_member.loss_options)
    except OptionError as e:
        raise SpecError(spec_path, [(f"{job_member.loss_loc}.{e.key}", e.message)]) from None


def precision_args(precision: str) -> dict[str, bool]:
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return {}
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    if precision in ("fp16", "bf16"):
        return {precision: True}
    return {}


def training_arguments(member, resolved, output_dir: Path):
    """`TrainingArguments` for a member: the spec's fields, then `[train.trainer_args]` on top."""
    from transformers import TrainingArguments

    t = member.train
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.batch_size * 2,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_grad_norm=t.max_grad_norm,
        seed=member.seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        logging_nan_inf_filter=False,  # a NaN loss must reach our check, not be averaged away
        metric_for_best_model=f"eval_{resolved.metric}",
        greater_is_better=resolved.greater_is_better,
        load_best_model_at_end=False,
        # a resumed member keeps its early-stopping patience count instead of starting it again
        restore_callback_states_from_checkpoint=True,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        **precision_args(t.precision),
    )
    kwargs.update(t.trainer_args)
    return TrainingArguments(**kwargs)


def checkpoint_epoch(path: Path) -> int | None:
    state = path / "trainer_state.json"
    if not state.is_file():
        return None
    try:
        return int(round(json.loads(state.read_text())["epoch"]))
    except (ValueError, KeyError, TypeError):
        return None


def epoch_checkpoints(ckpt_dir: Path) -> dict[int, Path]:
    """Complete Trainer checkpoints under `ckpt_dir`, by epoch."""
    found = {}
    if ckpt_dir.is_dir():
        for p in ckpt_dir.glob(f"{CHECKPOINT_PREFIX}*"):
            e = checkpoint_epoch(p)
            if e is not None and (p / "model.safetensors").is_file():
                found[e] = p
    return found


def best_epoch(history: dict[int, dict[str, float]], metric: str, greater: bool) -> int | None:
    """The selected epoch: best validation metric, ties to the earliest (as Trainer's own tracking)."""
    scored = [(e, h.get(f"eval_{metric}")) for e, h in sorted(history.items())]
    scored = [(e, v) for e, v in scored if v is not None and math.isfinite(v)]
    if not scored:
        return None
    best = scored[0]
    for e, v in scored[1:]:
        if (v > best[1]) if greater else (v < best[1]):
            best = (e, v)
    return best[0]


def metric_rows(row: dict[str, float | None]) -> list[tuple[str, str, float]]:
    """{"eval_accuracy": v, "train_loss": v, ...} as store rows (split, name, value); eval is valid."""
    rows = []
    for key, value in row.items():
        if value is not None:
            split, name = key.split("_", 1)
            rows.append(({"eval": "valid"}.get(split, split), name, value))
    return rows


def make_callback(job: MemberJob, metrics: dict[str, Callable], computer: MetricComputer,
                  valid: EncodedSplit, test: EncodedSplit | None):
    from transformers import TrainerCallback

    member = job.member.name
    metric, greater = job.resolved.metric, job.resolved.greater_is_better

    class StoreCallback(TrainerCallback):
        def __init__(self):
            self.trainer = None
            self.pending: dict[str, Any] = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and "eval_loss" not in logs:
                loss = float(logs["loss"])
                epoch = int(math.ceil(state.epoch - 1e-6))
                if not math.isfinite(loss):
                    raise TrainingError(f"member {member}: the training loss became {loss} in epoch {epoch}; "
                                        "lower the learning rate or check the data and the loss options")
                self.pending["train_loss"] = loss

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            epoch = int(round(state.epoch))
            valid_probs = computer.last_probs
            eval_loss = float(metrics.get("eval_loss", float("nan")))
            if not math.isfinite(eval_loss):
                raise TrainingError(f"member {member}: the validation loss became {eval_loss} in epoch {epoch}")
            row = {"train_loss": self.pending.pop("train_loss", None), "eval_loss": eval_loss}
            row.update({f"eval_{k}": float(metrics[f"eval_{k}"]) for k in job.member_metrics if f"eval_{k}" in metrics})
            preds = [("valid", valid.order, valid_probs)]
            if test is not None:
                test_probs, test_row = predict_split(self.trainer, test, job.member_metrics, "test")
                row.update(test_row)
                preds.append(("test", test.order, test_probs))
            self.pending["epoch"] = epoch
            self.pending["row"] = row
            self.pending["preds"] = preds

        def on_save(self, args, state, control, **kwargs):
            epoch, row, preds = self.pending.pop("epoch"), self.pending.pop("row"), self.pending.pop("preds")
            job.store.log_checkpoint(job.run_id, member, f"epoch-{epoch}", epoch, metric_rows(row), preds)
            job.history[epoch] = row
            self._prune(Path(args.output_dir))
            job.registry.hook.on_epoch_end(run_id=job.run_id, member=member, epoch=epoch, metrics=dict(row))
            if job.progress is not None:
                job.progress.epoch_done(member, epoch, row, metric)

        def on_step_end(self, args, state, control, **kwargs):
            if job.progress is not None:
                job.progress.step(member, state.global_step, state.max_steps)

        def _prune(self, ckpt_dir: Path) -> None:
            """Keep the best checkpoint so far, the last K for SWA, and the latest for resuming."""
            found = epoch_checkpoints(ckpt_dir)
            if not found:
                return
            keep = set(sorted(found)[-max(job.swa_k, 1):])
            best = best_epoch(job.history, metric, greater)
            if best is not None:
                keep.add(best)
            for e, path in found.items():
                if e not in keep:
                    shutil.rmtree(path, ignore_errors=True)

    return StoreCallback()


def train_member(job: MemberJob) -> int:
    """Train one member; returns the selected epoch. Raises TrainingError on a non-finite loss."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback

    m, resolved, data = job.member, job.resolved, job.data
    spec = resolved.spec
    set_seed(m.seed)
    backbone = job.registry.get("backbones", m.backbone)
    ctx = BackboneContext(
        model=m.model, num_labels=data.num_labels, label_names=data.label_names,
        train_texts=data.splits["train"].texts, special_tokens=list(spec.data.special_tokens),
        max_length=spec.data.max_length, seed=m.seed,
    )
    model, tokenizer = backbone.obj(ctx, m.options)
    loss_fn = build_loss(m, job.registry, data, resolved.path)

    max_len = spec.data.max_length
    train_ds = encode(tokenizer, data.splits["train"], max_len, sort_by_length=False)
    valid_ds = encode(tokenizer, data.splits["valid"], max_len, sort_by_length=True)
    test_ds = encode(tokenizer, data.splits["test"], max_len, sort_by_length=True) if "test" in data.splits else None

    metrics = {name: job.registry.get("metrics", name).obj for name in job.registry.names("metrics")}
    job.member_metrics = metrics
    computer = MetricComputer(metrics)

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        return loss_fn(logits, labels)

    ckpt_dir = job.out_dir / "checkpoints"
    args = training_arguments(m, resolved, ckpt_dir)
    callback = make_callback(job, metrics, computer, valid_ds, test_ds)
    callbacks = [callback]
    if spec.selection.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=spec.selection.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=computer,
        compute_loss_func=compute_loss,
        callbacks=callbacks,
    )
    callback.trainer = trainer
    trainer.remove_callback(PrinterCallback)  # with tqdm off, Trainer would print every log dict
    if job.progress is not None:
        job.progress.member_started(m.name, m.train.epochs, len(job.history))
    trainer.train(resume_from_checkpoint=str(job.resume_from) if job.resume_from else None)

    selected = best_epoch(job.history, resolved.metric, resolved.greater_is_better)
    if selected is None:
        raise TrainingError(f"member {m.name}: no epoch produced a finite eval_{resolved.metric}")
    if job.swa_k:
        run_swa(job, trainer, valid_ds, test_ds, metrics)
    save_selected(job, selected)
    return selected


def run_swa(job: MemberJob, trainer, valid: EncodedSplit, test: EncodedSplit | None,
            metrics: dict[str, Callable]) -> list[int]:
    """Average the last K epoch checkpoints, evaluate and store the result as checkpoint `swa`, save it."""
    from .swa import average_checkpoints, has_batchnorm, load_averaged, recompute_batchnorm

    found = epoch_checkpoints(job.out_dir / "checkpoints")
    if not found:
        raise TrainingError(f"member {job.member.name}: no epoch checkpoint on disk to average for SWA")
    epochs = sorted(found)[-job.swa_k:]
    if len(epochs) < job.swa_k:
        job.say(f"{job.member.name}: SWA over {len(epochs)} checkpoint(s), fewer than k = {job.swa_k} "
                f"(training stopped after epoch {max(found)})")
    model = trainer.model
    load_averaged(model, average_checkpoints([found[e] / "model.safetensors" for e in epochs]))
    if has_batchnorm(model):
        recompute_batchnorm(model, trainer.get_train_dataloader(), trainer.args.device)
        job.say(f"{job.member.name}: SWA recomputed BatchNorm statistics over the training split")
    else:
        job.say(f"{job.member.name}: SWA averaged epochs {epochs}; the model has no BatchNorm layers, "
                "so there are no statistics to recompute")
    valid_probs, row = predict_split(trainer, valid, metrics, "eval")
    preds = [("valid", valid.order, valid_probs)]
    if test is not None:
        test_probs, test_row = predict_split(trainer, test, metrics, "test")
        row.update(test_row)
        preds.append(("test", test.order, test_probs))
    job.store.log_checkpoint(job.run_id, job.member.name, "swa", None, metric_rows(row), preds)
    job.store.set_swa_epochs(job.run_id, job.member.name, epochs)
    swa_dir = job.out_dir / "swa"
    shutil.rmtree(swa_dir, ignore_errors=True)
    trainer.save_model(str(swa_dir))
    (swa_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle: never part of what runner ships
    write_member_info(job, swa_dir)
    (swa_dir / "selection.json").write_text(json.dumps({"swa_epochs": epochs, "run_id": job.run_id,
                                                       "member": job.member.name}, indent=2))
    return epochs


def write_member_info(job: MemberJob, directory: Path) -> None:
    """runner.json: what `load_checkpoint` needs to rebuild this member without the spec."""
    write_runner_json(directory, job.member.backbone, job.member.options_dict(), job.data.label_names,
                      job.resolved.spec.data.max_length, job.member.model)


def save_selected(job: MemberJob, epoch: int) -> Path:
    """Copy the selected epoch's weights, config and tokenizer to runs/<run_id>/<member>/selected/."""
    found = epoch_checkpoints(job.out_dir / "checkpoints")
    src = found.get(epoch)
    if src is None:
        raise TrainingError(f"member {job.member.name}: the checkpoint of the selected epoch {epoch} is missing")
    dst = job.out_dir / "selected"
    tmp = job.out_dir / "selected.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    skip = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "training_args.bin", "trainer_state.json"}
    for f in src.iterdir():
        if f.is_file() and f.name not in skip:
            shutil.copy2(f, tmp / f.name)
    write_member_info(job, tmp)
    (tmp / "selection.json").write_text(json.dumps({
        "epoch": epoch, "metric": f"eval_{job.resolved.metric}", "run_id": job.run_id, "member": job.member.name,
    }, indent=2))
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst
