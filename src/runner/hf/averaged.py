"""SWA for a Trainer script's member (the callback) or an adopted folder: the last K epoch checkpoints
averaged into a copy of the model, predicted, stored as the member's checkpoint `swa` and saved to
`swa/`, as `runner apply` does (runner.train.swa holds the averaging itself)."""

from __future__ import annotations

import copy
import json
from typing import Callable

from runner.core.records import EpochRecord
from runner.hf.record import MemberRun
from runner.hf.splits import ScriptSplit
from runner.store import checkpoints
from runner.train.backbones import write_runner_json
from runner.train.evaluation import split_metrics
from runner.train.swa import average_checkpoints, has_batchnorm, load_averaged


def store_swa(run: MemberRun, model, tokenizer, k: int, splits: dict[str, ScriptSplit], metric_fns: dict,
              predict: Callable, model_info: dict, say=print) -> list[int]:
    """Average the member's last `k` epoch checkpoints (on a copy of `model`; the model itself is left
    as it was) and store the result; returns the epochs averaged ([] when there are none).
    `predict(model, split)` gives a split's probabilities."""
    found = checkpoints.epoch_checkpoints(run.owner)
    epochs = sorted(found)[-k:] if k > 0 else []
    if not epochs:
        return []
    averaged = copy.deepcopy(model)
    load_averaged(averaged, average_checkpoints([found[e] / "model.safetensors" for e in epochs]))
    if has_batchnorm(averaged):
        say(f"{run.member}: the model has BatchNorm layers; SWA keeps the last epoch's statistics")
    values, predictions = {}, []
    for name, split in splits.items():
        probs = predict(averaged, split)
        values.update(split_metrics(metric_fns, probs, split.labels, name))
        predictions.append((name, split.index, probs))
    run.store.log_checkpoint(run.run_id, run.member, "swa", None, EpochRecord(0, values).rows(), predictions)
    run.store.set_swa_epochs(run.run_id, run.member, epochs)
    if run.owner.swa.exists():
        checkpoints.remove(run.owner.swa, run.owner)
    averaged.save_pretrained(str(run.owner.swa))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(run.owner.swa))
    write_runner_json(run.owner.swa, "hf", {}, **model_info)
    (run.owner.swa / "selection.json").write_text(json.dumps({"swa_epochs": epochs, "run_id": run.run_id,
                                                               "member": run.member}, indent=2))
    return epochs
