"""Training one adaptation (runner.train.adapt), or reusing it from the cache (`ensure`): masked-LM
with Hugging Face `Trainer`, resumable.

The backbone plugin's `adapt(ctx, options)` gives the masked-LM model and tokenizer; Trainer trains
it on the corpus with `DataCollatorForLanguageModeling` (dynamic masking, `mlm_probability`,
`whole_word_mask`), saving a checkpoint each epoch in `adapted/<key>.partial/` so that a killed
adaptation resumes. Each epoch (and once before training, epoch 0) the MLM loss is measured on
the held-out slice and on an equal slice of the training texts, both masked once with the
adaptation's seed, so the numbers compare across epochs and across runs. When done, the model is
saved (safetensors) with its tokenizer and `adapt.json`, and the folder is renamed into the cache.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from runner.core import pause
from runner.core.locks import file_lock
from runner.errors import TrainingError
from runner.plugins.contexts import BackboneContext
from runner.store import caches, checkpoints
from runner.train import loading, ranks
from runner.train.adapt import INFO, Adaptation, cached, root_for
from runner.train.arguments import precision_args

EPOCH0 = "epoch0.json"


class _Texts(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


class _Collator:
    """Masks training batches afresh each time; pads already-masked evaluation examples as they are."""

    def __init__(self, mlm, tokenizer):
        self.mlm, self.tokenizer = mlm, tokenizer

    def __call__(self, examples: list[dict]) -> dict:
        if "labels" not in examples[0]:
            return self.mlm(_padded(self.tokenizer, examples) if "offset_mapping" in examples[0] else examples)
        labels = [e["labels"] for e in examples]
        batch = self.tokenizer.pad([{k: v for k, v in e.items() if k != "labels"} for e in examples],
                                   return_tensors="pt")
        width = batch["input_ids"].shape[1]
        left = self.tokenizer.padding_side == "left"
        batch["labels"] = torch.tensor([[-100] * (width - len(x)) + x if left else x + [-100] * (width - len(x))
                                        for x in labels])
        return batch


def _padded(tokenizer, examples: list[dict]) -> list[dict]:
    """Examples padded to one length by hand: `tokenizer.pad` leaves `offset_mapping` (which
    whole-word masking reads) unpadded, and a batch of unequal offset lists cannot become a tensor."""
    width = max(len(e["input_ids"]) for e in examples)
    fill = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1,
            "offset_mapping": (0, 0)}
    left = tokenizer.padding_side == "left"
    out = []
    for e in examples:
        n = width - len(e["input_ids"])
        out.append({k: ([fill.get(k, 0)] * n + list(v) if left else list(v) + [fill.get(k, 0)] * n)
                    for k, v in e.items()})
    return out


def _encode(tokenizer, texts: list[str], max_length: int, whole_word: bool) -> list[dict]:
    enc = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True,
                    return_offsets_mapping=whole_word)
    keys = list(enc.keys())
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def _masked_once(rows: list[dict], mlm, batch: int = 64) -> list[dict]:
    """Evaluation examples masked once (mlm carries the adaptation's seed): fixed inputs and labels."""
    out = []
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        b = mlm(_padded(mlm.tokenizer, part) if "offset_mapping" in part[0] else [dict(r) for r in part])
        width, left = b["input_ids"].shape[1], mlm.tokenizer.padding_side == "left"
        for j, r in enumerate(part):
            n = len(r["input_ids"])
            own = slice(width - n, width) if left else slice(0, n)  # the example's tokens, not its padding
            ex = {"input_ids": b["input_ids"][j, own].tolist(), "attention_mask": r["attention_mask"],
                  "labels": b["labels"][j, own].tolist()}
            if "token_type_ids" in r:
                ex["token_type_ids"] = r["token_type_ids"]
            out.append(ex)
    return out


def mlm_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy over the masked positions (labels -100 elsewhere); runner computes it itself,
    so a plugin's masked-LM module only has to return `.logits`."""
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                             ignore_index=-100, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum()
    return loss / torch.clamp(torch.as_tensor(count, device=loss.device), min=1)


def build_mlm(m, resolved, data, registry):
    """(masked-LM model, tokenizer) of member `m` from its backbone plugin, seeded with the adapt
    seed; training and the dry run both build it here. TrainingError for a tokenizer without a mask token."""
    from transformers import set_seed

    seed = m.adapt.seed
    set_seed(seed)
    ctx = BackboneContext(model=m.model, num_labels=data.num_labels, label_names=data.label_names,
                          train_texts=data.splits["train"].texts,
                          special_tokens=list(resolved.spec.data.special_tokens),
                          max_length=resolved.spec.data.max_length, seed=seed)
    model, tokenizer = registry.backbone(m.backbone).adapt(ctx, m.options)
    if tokenizer.mask_token is None:
        raise TrainingError(f"member {m.name}: the tokenizer of backbone {m.backbone!r} has no mask token; "
                            "masked-LM adaptation needs one (set `adapt = false` on the member)")
    return model, tokenizer


def make_trainer(adaptation: Adaptation, model, tokenizer, output_dir: Path, precision: dict, callbacks=()):
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    s = adaptation.settings
    mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=s.mlm_probability,
                                          whole_word_mask=s.whole_word_mask, seed=s.seed)
    train = _encode(tokenizer, adaptation.texts, s.max_length, s.whole_word_mask)
    held = _encode(tokenizer, adaptation.heldout, s.max_length, s.whole_word_mask)
    slice_ = np.random.default_rng(s.seed + 1).choice(len(train), size=min(len(train), len(held)), replace=False)
    fixed = DataCollatorForLanguageModeling(tokenizer, mlm_probability=s.mlm_probability,
                                            whole_word_mask=s.whole_word_mask, seed=s.seed + 2)
    evals = {"train": _Texts(_masked_once([train[i] for i in sorted(slice_)], fixed)),
             "heldout": _Texts(_masked_once(held, fixed))}
    args = TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size * 2, learning_rate=s.learning_rate, seed=s.seed,
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch", save_total_limit=1,
        prediction_loss_only=True, label_names=["labels"], report_to="none", disable_tqdm=True,
        remove_unused_columns=False, logging_nan_inf_filter=False,
        log_level_replica="error",  # under torchrun, other ranks stay as quiet as rank 0 (runner.train.ranks)
        **precision)
    trainer = Trainer(model=model, args=args, train_dataset=_Texts(train), eval_dataset=evals,
                      data_collator=_Collator(mlm, tokenizer), compute_loss_func=mlm_loss,
                      callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)
    return trainer


def _report(job, adaptation: Adaptation, say):
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "eval_heldout_loss" not in logs:
                return
            epoch = round(state.epoch or 0)
            loss = logs["eval_heldout_loss"]
            if not np.isfinite(loss):
                raise TrainingError(f"member {job.member.name}: adaptation {adaptation.key}: the MLM loss is "
                                    f"{loss} at epoch {epoch}; lower [adapt] learning_rate")
            if job.progress is not None:
                job.progress.adapt_epoch(job.member.name, epoch, adaptation.settings.epochs, loss)
            elif job.verbose:
                say(f"adapt {adaptation.key}: epoch {epoch}/{adaptation.settings.epochs}, held-out MLM loss {loss:.4f}")

    return Report()


def ensure(adaptation: Adaptation, job, say: Callable[[str], None]) -> Path:
    """The adapted folder of `adaptation`: reused from the cache, or trained now (resuming an
    interrupted adaptation). `job` is the member's runner.train.member.MemberJob. Stores the losses."""
    root = root_for(job.store.path)
    key = adaptation.key
    if "test" in adaptation.settings.texts:
        say(f"adapt: {job.member.name} adapts on the test split's texts ([adapt] texts names \"test\"): "
            "transductive, so its test numbers are not those of unseen text")
    # Under torchrun only rank 0 takes the lock and looks in the cache; every rank trains (DDP) what
    # is missing, and rank 0 alone writes the folder (runner.train.ranks).
    lock = caches.lock_path(root, key)
    with file_lock(lock, f"adaptation {key}", wait_s=24 * 3600) if ranks.writes() else nullcontext():
        folder = ranks.agree(cached(root, key) if ranks.writes() else None)
        if folder is not None:
            say(f"adapt: reused {key} ({job.member.name})")
        else:
            folder = train_adaptation(adaptation, job, root, say)
        if ranks.writes():
            caches.note_store(folder, job.store.path)
        # recorded while the lock is held: `runner gc` takes it too, so it never sees the folder in place
        # and not yet used by this store's member
        info = json.loads((folder / INFO).read_text())
        job.store.log_adaptation(info, str(folder))
        job.store.set_member_adapt(job.run_id, job.member.name, key)
        pause.point("adapt-recorded")
    pause.point("adapt-released")
    return folder


def train_adaptation(adaptation: Adaptation, job, root: Path, say) -> Path:
    """Train (or resume) the adaptation in `<root>/<key>.partial/`; returns the finished cache folder."""
    key = adaptation.key
    if not adaptation.texts:  # planned from the cache alone (a refit), and the folder went away since
        raise TrainingError(f"member {job.member.name}: adaptation {key} is no longer in {root}; apply the spec "
                            "that made it again to recreate it")
    work = root / f"{key}.partial"
    trainer_dir = work / "trainer"
    # under torchrun every rank trains; rank 0 alone cleans, writes and renames the folder (runner.train.ranks)
    if ranks.writes():
        trainer_dir.mkdir(parents=True, exist_ok=True)
    last = ranks.agree(_last_complete(trainer_dir, work) if ranks.writes() else None)
    s = adaptation.settings
    say(f"adapt: {'resuming' if last else 'training'} {key} for {job.member.name} ({len(adaptation.texts)} texts, "
        f"{len(adaptation.heldout)} held out, {s.epochs} epochs)")
    started = time.time()
    model, tokenizer = build_mlm(job.member, job.resolved, job.data, job.registry)
    if job.progress is not None:
        job.progress.adapt_started(job.member.name, s.epochs)
    trainer = make_trainer(adaptation, model, tokenizer, trainer_dir, precision_args(job.member.train.precision),
                           [_report(job, adaptation, say)])
    if not ranks.agree((work / EPOCH0).is_file() if ranks.writes() else None):  # the loss before adapting
        before = trainer.evaluate()
        if ranks.writes():
            (work / EPOCH0).write_text(json.dumps({k: before[k] for k in ("eval_train_loss", "eval_heldout_loss")}))
    if ranks.writes() and loading.of(model) is not None:  # from a checkpoint: was its masked-LM head any good?
        say(_against_uniform(key, json.loads((work / EPOCH0).read_text())["eval_heldout_loss"], len(tokenizer),
                             loading.of(model)))
    trainer.train(resume_from_checkpoint=last)
    folder = root / key
    if not ranks.writes():
        ranks.barrier()  # until rank 0 has the folder in place
        return folder
    history = _history(work, trainer.state.log_history)
    out = work / "model"
    trainer.save_model(str(out))  # safetensors (save_pretrained, or the state dict for a plain module)
    tokenizer.save_pretrained(str(out))
    if (out / "training_args.bin").exists():  # a pickle Trainer writes beside the weights: never shipped
        checkpoints.remove_under(out / "training_args.bin", work)
    info = {**adaptation.info(), "history": history, "seconds": round(time.time() - started, 2)}
    (out / INFO).write_text(json.dumps(info, indent=2))
    pause.point("adapt-trained")
    os.replace(out, folder)
    pause.point("adapt-renamed")
    checkpoints.remove_under(work, root)
    ranks.barrier()
    first, final = history[0]["heldout"], history[-1]["heldout"]
    say(f"adapt: {key} done in {info['seconds']:.0f} s (held-out MLM loss {first:.3f} -> {final:.3f})")
    return folder


def _against_uniform(key: str, loss: float, vocab_size: int, report: loading.LoadReport) -> str:
    """The epoch-0 held-out MLM loss against ln(V), guessing every token alike: a loss above it means
    the masked-LM head knows less than nothing yet (a new head), so the first epochs train the head."""
    uniform = loading.uniform_loss(vocab_size)
    where = "above" if loss > uniform else "below"
    head = f"; the masked-LM head is new ({loading.brief(report.head)})" if report.head else ""
    return (f"adapt: {key}: held-out MLM loss before adapting {loss:.3f}, {where} ln({vocab_size}) = {uniform:.3f} "
            f"(guessing every token alike){head}")


def _last_complete(trainer_dir: Path, work: Path) -> str | None:
    """The newest checkpoint Trainer finished writing (trainer_state.json is its last file); a folder a
    kill interrupted mid-save is removed, so Trainer neither resumes from it nor rotates onto it."""
    complete = []
    for folder in trainer_dir.glob("checkpoint-*"):
        try:
            json.loads((folder / "trainer_state.json").read_text())
            complete.append((int(folder.name.split("-")[1]), folder))
        except (OSError, ValueError, IndexError):
            checkpoints.remove_under(folder, work)
    return str(max(complete)[1]) if complete else None


def _history(work: Path, log_history: list[dict]) -> list[dict]:
    """[{epoch, train, heldout, train_running}] from epoch 0 to the last, from Trainer's log."""
    before = json.loads((work / EPOCH0).read_text())
    rows = {0: {"epoch": 0, "train": before["eval_train_loss"], "heldout": before["eval_heldout_loss"],
                "train_running": None}}
    for entry in log_history:
        epoch = round(entry.get("epoch", 0))
        row = rows.setdefault(epoch, {"epoch": epoch, "train": None, "heldout": None, "train_running": None})
        if "eval_heldout_loss" in entry:
            row["heldout"] = entry["eval_heldout_loss"]
        if "eval_train_loss" in entry:
            row["train"] = entry["eval_train_loss"]
        if "loss" in entry:
            row["train_running"] = entry["loss"]
    return [rows[e] for e in sorted(rows)]


def dry_run_problem(m, resolved, registry, data) -> tuple[str | None, str | None]:
    """The dry run of a member's adaptation: the masked-LM model built, one masked batch of training
    texts through it and its loss. (why it cannot train, or None; a warning to print, or None)."""
    from transformers import DataCollatorForLanguageModeling

    s = m.adapt
    try:
        model, tokenizer = build_mlm(m, resolved, data, registry)
    except TrainingError:
        return f"the tokenizer of backbone {m.backbone!r} has no mask token, which masked-LM needs", None
    except Exception as e:
        return f"backbone {m.backbone!r} cannot build its masked-LM model: {type(e).__name__}: {e}", None
    problem, warning = _new_head(m, model, tokenizer)
    if problem is not None:
        return problem, None
    try:
        mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=s.mlm_probability,
                                              whole_word_mask=s.whole_word_mask, seed=s.seed)
        batch = _Collator(mlm, tokenizer)(_encode(tokenizer, data.splits["train"].texts[:4], s.max_length,
                                                  s.whole_word_mask))
        labels = batch.pop("labels")
        with torch.no_grad():
            loss = mlm_loss(model(**batch), labels)
    except Exception as e:
        return f"one masked-LM batch failed: {type(e).__name__}: {e}", None
    if not torch.isfinite(loss):
        return f"the masked-LM loss of one batch is {loss.item()}", None
    return None, warning


def _new_head(m, model, tokenizer) -> tuple[str | None, str | None]:
    """A checkpoint whose masked-LM head would start at random: a problem unless `adapt.new_head`, then
    a warning. (problem, warning)."""
    report = loading.of(model)
    if report is None or not report.head:
        return None, None
    head, uniform = loading.brief(report.head), loading.uniform_loss(len(tokenizer))
    unused = f"; not used from the checkpoint: {loading.brief(report.unused)}" if report.unused else ""
    if not m.adapt.new_head:
        return (f"{report.source} has no masked-LM head: {len(report.head)} tensors ({head}) would start at random, "
                f"so adaptation would first train that head and the held-out MLM loss would start near or above "
                f"ln({len(tokenizer)}) = {uniform:.2f}, guessing every token alike{unused}. Set adapt.new_head = true "
                "to adapt it anyway, or `adapt = false` on the member"), None
    return None, (f"{m.name}: [adapt] starts a new masked-LM head, {len(report.head)} tensors at random ({head}; "
                  f"adapt.new_head = true): its first steps train the head, not the encoder{unused}")
