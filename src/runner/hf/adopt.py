"""`runner adopt`: a Hugging Face `Trainer` output folder, trained before runner, stored as a run.

The folder is what Trainer leaves: `checkpoint-<step>` folders, each with `trainer_state.json` (the
epoch it was saved at and `log_history`, every loss and metric Trainer logged), the model
(`config.json`, `model.safetensors`) and, when the script gave Trainer its tokenizer, the tokenizer;
with `save_total_limit` only the last few are left. `plan_adopt` checks all of it and the data before
anything is written; `adopt` then predicts the valid/test data with each kept checkpoint and stores
the member through the records the callback writes (runner.hf.record): every epoch Trainer logged
(its train and validation loss), each kept checkpoint's predictions and runner's metrics of them, an
SWA checkpoint over the kept ones, and the selected checkpoint's model and tokenizer.

Nothing pickled in the folder is ever unpickled (`training_args.bin`, `optimizer.pt`, `scheduler.pt`,
`rng_state*.pth`): the weights come from safetensors only, configs that name custom code (`auto_map`)
are refused, and transformers loads with `trust_remote_code=False, local_files_only=True`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.core.records import EpochRecord
from runner.data.inputs import read_input
from runner.data.prepare import Split, load_raw, prepare
from runner.errors import InputError
from runner.hf.averaged import store_swa
from runner.hf.record import check_name, fail_member, finish_member, link_checkpoint, open_member, selection_of
from runner.hf.splits import ScriptSplit, predict
from runner.spec import load_and_resolve
from runner.store import Store, checkpoints
from runner.train.backbones import check_model_files
from runner.train.evaluation import split_metrics

LOCAL = dict(trust_remote_code=False, local_files_only=True)
PICKLED = (".bin", ".pt", ".pth", ".pkl", ".pickle")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


@dataclass
class Kept:
    """One checkpoint folder Trainer left, saved at the end of `epoch`."""

    path: Path
    epoch: int
    step: int


@dataclass
class AdoptPlan:
    output_dir: Path
    kept: list[Kept]  # by epoch
    logged: dict[int, dict[str, float]]  # epoch -> train_loss / eval_loss as Trainer logged them
    labels: list[str]
    splits: dict[str, Split]
    max_length: int
    tokenizer: object
    name: str
    member: str
    selection: dict
    swa: int


def plan_adopt(output_dir: Path, data: list[str], registry, *, name: str | None = None, member: str = "member",
               metric: str = "eval_accuracy", greater_is_better: bool | None = None, swa: int | None = None,
               labels: list[str] | None = None, max_length: int | None = None) -> AdoptPlan:
    """Everything `adopt` needs, checked: InputError naming the argument or file otherwise."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise InputError(f"OUTPUT_DIR {output_dir}: {'is not a folder' if output_dir.exists() else 'not found'}; "
                         "give the output_dir of a Trainer run (it holds checkpoint-* folders)")
    name = name if name is not None else output_dir.resolve().name
    check_name("--name", name)
    check_name("--member", member)
    kept = _kept(output_dir)
    config = check_model_files(kept[-1].path).get("config.json")
    if config is None:
        raise InputError(f"{kept[-1].path / 'config.json'}: not found; a Trainer checkpoint holds the model's config")
    id2label = config.get("id2label") or {}
    num_labels = len(id2label) or int(config.get("num_labels", 2))
    tokenizer = _tokenizer(output_dir, kept[-1].path)
    selection = selection_of(metric, greater_is_better)
    if selection["metric"] != "eval_loss" and selection["metric"][5:] not in registry.metric_fns():
        raise InputError(f"--metric {metric}: not a metric runner computes; one of "
                         f"{', '.join(['eval_loss', *(f'eval_{k}' for k in registry.metric_fns())])}")
    if swa is not None and swa < 0:
        raise InputError(f"--swa {swa}: the number of last kept checkpoints to average, 0 for none")
    if labels is not None and len(labels) != num_labels:
        raise InputError(f"--labels {','.join(labels)}: {len(labels)} labels, but the model in "
                         f"{kept[-1].path / 'config.json'} has {num_labels}")
    names, splits, spec_length = _data(data, registry, labels or [id2label.get(str(i), f"LABEL_{i}")
                                                                  for i in range(num_labels)])
    if len(names) != num_labels:
        raise InputError(f"--data {' '.join(data)}: {len(names)} labels ({', '.join(names)}), but the model in "
                         f"{kept[-1].path / 'config.json'} has {num_labels}")
    length = max_length or spec_length or min(int(config.get("max_position_embeddings", 512)), 512)
    logged = _logged(kept[-1].path / "trainer_state.json")
    return AdoptPlan(output_dir, kept, logged, names, splits, length, tokenizer, name, member, selection,
                     len(kept) if swa is None else swa)


def _kept(output_dir: Path) -> list[Kept]:
    found = []
    for path in sorted(output_dir.glob(f"{checkpoints.CHECKPOINT_PREFIX}*")):
        if not path.is_dir():
            continue
        state = path / "trainer_state.json"
        try:
            doc = json.loads(state.read_text(encoding="utf-8"))
            epoch, step = float(doc["epoch"]), int(doc["global_step"])
        except FileNotFoundError:
            raise InputError(f"{state}: not found; every checkpoint-* folder Trainer saves holds one") from None
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise InputError(f"{state}: not a Trainer state ({type(e).__name__}: {e}); the checkpoint is "
                             "damaged") from None
        if abs(epoch - round(epoch)) > 1e-6:
            raise InputError(f"{state}: saved at epoch {epoch:.3f}, mid-epoch; adopt takes the checkpoints of "
                             "save_strategy='epoch'")
        weights = path / "model.safetensors"
        if not weights.is_file():
            pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLED and p.name.startswith(
                ("pytorch_model", "model")))
            what = f"only pickled weights ({', '.join(pickles)})" if pickles else "no model weights"
            raise InputError(f"{weights}: not found, {what}; runner never unpickles a file: save with "
                             "safetensors (TrainingArguments(save_safetensors=True), the default)")
        found.append(Kept(path, int(round(epoch)), step))
    if not found:
        raise InputError(f"OUTPUT_DIR {output_dir}: no checkpoint-* folder; give the output_dir a Trainer run "
                         "saved checkpoints to (save_strategy='epoch')")
    found.sort(key=lambda k: (k.epoch, k.step))
    for a, b in zip(found, found[1:]):
        if a.epoch == b.epoch:
            raise InputError(f"OUTPUT_DIR {output_dir}: {a.path.name} and {b.path.name} are both of epoch {a.epoch}; "
                             "adopt takes one checkpoint per epoch (save_strategy='epoch')")
    for k in found:
        check_model_files(k.path)
    return found


def _tokenizer(output_dir: Path, last: Path):
    """The tokenizer saved with the last checkpoint (or in OUTPUT_DIR), loaded without running code."""
    from transformers import AutoTokenizer

    for folder in (last, output_dir):
        if any((folder / f).is_file() for f in TOKENIZER_FILES):
            try:
                return AutoTokenizer.from_pretrained(str(folder), **LOCAL)
            except Exception as e:  # any of its files unreadable or inconsistent
                raise InputError(f"{folder}: the tokenizer cannot be loaded ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}); its files are damaged") from None
    raise InputError(f"{last}: no tokenizer (tokenizer.json, tokenizer_config.json); give Trainer the tokenizer "
                     "(processing_class=tokenizer) so that it saves it beside the model")


def _data(data: list[str], registry, default_labels: list[str]) -> tuple[list[str], dict[str, Split], int | None]:
    """The label names, the valid and test splits and the spec's max_length (None for files)."""
    if not data:
        raise InputError("--data: give the spec whose [data] the run was trained on (a .toml file) or the files, "
                         "as --data valid=PATH --data test=PATH")
    if len(data) == 1 and data[0].endswith(".toml"):
        path = Path(data[0])
        if not path.is_file():
            raise InputError(f"--data {path}: file not found")
        resolved = load_and_resolve(path, registry)
        spec = resolved.spec
        prepared = prepare(spec.data, load_raw(spec.data, registry, path, spec.seed, resolved.data_options), spec.seed)
        splits = {n: s for n, s in prepared.splits.items() if n in ("valid", "test")}
        if "valid" not in splits:
            raise InputError(f"--data {path}: [data] has no valid split; adopt predicts it to select a checkpoint")
        return prepared.label_names, splits, spec.data.max_length
    splits = {}
    for item in data:
        split, sep, file = item.partition("=")
        if not sep or split not in ("valid", "test") or not file:
            raise InputError(f"--data {item}: give a spec (.toml) or valid=PATH and test=PATH (csv, jsonl, parquet)")
        if split in splits:
            raise InputError(f"--data {item}: {split} is given twice")
        found = read_input(Path(file), default_labels, registry)
        if found.labels is None:
            raise InputError(f"--data {item}: the file has no labels; adopt needs the labelled {split} split")
        splits[split] = Split(found.texts, found.labels.astype(np.int64))
    if "valid" not in splits:
        raise InputError(f"--data {' '.join(data)}: no valid=PATH; adopt predicts the valid split to select a "
                         "checkpoint")
    return default_labels, splits, None


def _logged(state: Path) -> dict[int, dict[str, float]]:
    """epoch -> the train loss (the epoch's last logged `loss`) and `eval_loss` Trainer logged."""
    logged: dict[int, dict[str, float]] = {}
    for entry in json.loads(state.read_text(encoding="utf-8")).get("log_history", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), (int, float)):
            continue
        for key, name in (("loss", "train_loss"), ("eval_loss", "eval_loss")):
            value = entry.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                epoch = int(math.ceil(entry["epoch"] - 1e-6)) if key == "loss" else int(round(entry["epoch"]))
                logged.setdefault(max(epoch, 1), {})[name] = float(value)
    return logged


def adopt(plan: AdoptPlan, store: Store, registry, batch_size: int = 32, say=print) -> tuple[str, int]:
    """Predict and store every kept checkpoint as the member `plan.member` of the run `plan.name`;
    returns (run id, the selected epoch). A failure marks the member failed: the same command again
    stores it afresh, not from where it stopped: adopt only predicts, so starting over costs seconds, and
    the member's rows can never mix two states of an output folder that a continued training changed."""
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    problems = checkpoints.path_problems(checkpoints.runs_root(store), f"{plan.name}-{'0' * 8}-2", [plan.member])
    if problems:
        raise InputError(f"--store {store.path}: " + "; ".join(problems))
    tokenizer = plan.tokenizer
    splits = {n: _encoded(n, s, tokenizer, plan.max_length) for n, s in plan.splits.items()}
    collate = DataCollatorWithPadding(tokenizer)
    metric_fns = registry.metric_fns()
    run = open_member(store, plan.name, plan.member, "adopted", plan.labels, plan.splits, plan.selection, None, 0,
                      {"output_dir": str(plan.output_dir.resolve())}, None, say)
    try:
        for epoch, values in sorted(plan.logged.items()):
            if epoch not in {k.epoch for k in plan.kept}:  # its checkpoint is gone: the logged losses only
                store.log_checkpoint(run.run_id, run.member, f"epoch-{epoch}", epoch,
                                     EpochRecord(epoch, values).rows(), [])
        model, started = None, time.monotonic()
        for i, k in enumerate(plan.kept):
            target = link_checkpoint(k.path, run.owner)
            if not any((target / f).is_file() for f in TOKENIZER_FILES):  # it ships with its tokenizer, as apply's do
                tokenizer.save_pretrained(str(target))
            model = AutoModelForSequenceClassification.from_pretrained(str(k.path), use_safetensors=True, **LOCAL)
            values, predictions = dict(plan.logged.get(k.epoch, {})), []
            for name, split in splits.items():
                probs = predict(model, split, collate, batch_size, len(plan.labels), plan.member)
                values.update(split_metrics(metric_fns, probs, split.labels, name))
                predictions.append((name, split.index, probs))
            record = EpochRecord(k.epoch, values)
            store.log_checkpoint(run.run_id, run.member, f"epoch-{k.epoch}", k.epoch, record.rows(), predictions)
            run.history[k.epoch] = record  # selection chooses among the kept checkpoints only
            left = (time.monotonic() - started) / (i + 1) * (len(plan.kept) - i - 1)
            say(f"{k.path.name} (epoch {k.epoch}): {plan.selection['metric']} "
                f"{values.get(plan.selection['metric'], float('nan')):.4f}; {i + 1}/{len(plan.kept)} predicted"
                + (f", about {left:.0f} s left" if i + 1 < len(plan.kept) else ""))
        model_info = {"label_names": plan.labels, "max_length": plan.max_length, "model": None}
        swa_epochs = store_swa(run, model, tokenizer, plan.swa if len(plan.kept) > 1 else 0, splits, metric_fns,
                               lambda m, s: predict(m, s, collate, batch_size, len(plan.labels), plan.member),
                               model_info, say)
        selected = finish_member(run, registry, model_info, bool(swa_epochs), say)
    except BaseException as e:
        fail_member(run, f"{type(e).__name__}: {e}")
        raise
    return run.run_id, selected


def _encoded(name: str, split: Split, tokenizer, max_length: int) -> ScriptSplit:
    enc = tokenizer(split.texts, truncation=True, max_length=max_length)
    items = [{k: enc[k][i] for k in enc.keys()} for i in range(len(split.texts))]
    lengths = np.array([len(item["input_ids"]) for item in items])
    return ScriptSplit(name, items, np.asarray(split.labels, dtype=np.int64), list(split.texts),
                       np.argsort(lengths, kind="stable"))
