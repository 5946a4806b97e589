"""The run and member records of a Trainer script (the callback) or of an adopted output folder.

They are the records `runner apply` writes, so every read command takes them: a run whose `spec`
says where it came from (`source`), which metric selects and which way, and its members; each script
or adopted folder is one member. Runs are found by name and data: scripts that share a `name` and
the same eval splits add their members to one run (`runner ensemble NAME` then averages them), and a
member that already finished there is never overwritten (the script's run becomes a new run).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from runner.core.environment import environment
from runner.core.locks import file_lock
from runner.core.records import EpochRecord, MemberHistory
from runner.core.selection import best_epoch, pick_all
from runner.data.prepare import dataset_hash
from runner.errors import InputError, TrainingError
from runner.run.plan import new_run_id
from runner.spec.models import NAME_PATTERN
from runner.store import Store, checkpoints
from runner.train.backbones import write_runner_json

PICKLES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "training_args.bin", "pytorch_model.bin"}
DIRECTIONS = {"loss": False, "log_loss": False}  # metrics where less is better; any other: more is


def selection_of(metric: str, greater_is_better: bool | None) -> dict:
    """The `selection.resolved` block of the spec: `eval_accuracy` -> best_eval_accuracy, more is better."""
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    default = DIRECTIONS.get(key[len("eval_"):], True)
    greater = default if greater_is_better is None else bool(greater_is_better)
    return {"metric": key, "greater_is_better": greater,
            "strategy": f"best_{key}" if greater == default else "selected"}


def check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not re.match(NAME_PATTERN, value):
        raise InputError(f"{what}={value!r}: a name is a letter or digit, then letters, digits, _ . or - "
                         "(at most 100 characters)")


@dataclass
class MemberRun:
    """Where one script's (or adopted folder's) member is stored, and the lock held while it is written."""

    store: Store
    run_id: str
    member: str
    owner: checkpoints.MemberDir
    selection: dict
    history: dict[int, EpochRecord] = field(default_factory=dict)
    held: ExitStack = field(default_factory=ExitStack)


def open_member(store: Store, name: str, member: str, source: str, labels: list[str], splits: dict,
                selection: dict, model: str | None, seed: int, options: dict, resume_after: int | None,
                say=print) -> MemberRun:
    """Find or create the run `name` over `splits` and (re)start `member` in it, holding the run's lock.

    `resume_after`: the epoch Trainer resumes after (a script restarted with `resume_from_checkpoint`):
    the member's stored rows up to it stay and later ones go; None starts the member afresh."""
    dataset_id = dataset_hash(list(labels), splits)
    spec = {"name": name, "source": source, "selection": {"resolved": selection}, "members": [],
            "data": {"labels": list(labels), "splits": sorted(splits)}}
    spec_hash = hashlib.sha256(json.dumps([name, source, dataset_id, selection], sort_keys=True).encode()).hexdigest()
    store.open()
    root = checkpoints.runs_root(store)
    held = ExitStack()
    with file_lock(root / ".apply.lock", f"store {store.path}", wait_s=30):
        existing = store.latest_run_for(spec_hash)
        statuses = {m["member"]: m["status"] for m in store.members(existing["run_id"])} if existing else {}
        if existing is not None and statuses.get(member) == "finished":
            say(f"Member {member!r} of run {existing['run_id']} is already finished; storing this one as a new run.")
            existing = None
        store.put_examples(dataset_id, splits)
        if existing is None:
            run_id = new_run_id(store, name, spec_hash)
            store.create_run(run_id, name, spec, spec_hash, dataset_id, list(labels), environment())
        else:
            run_id = existing["run_id"]
        held.enter_context(file_lock(root / run_id / ".lock", f"run {run_id}"))
    run = MemberRun(store, run_id, member, checkpoints.MemberDir(root, run_id, member), selection, held=held)
    if member in statuses and existing is not None:
        last = resume_after or 0
        store.truncate_member(run_id, member, last)
        run.history = {e.epoch: e for e in store.member_epochs(run_id, member)} if last else {}
        if not last and run.owner.path.exists():
            checkpoints.remove(run.owner.path, run.owner)
    store.start_member(run_id, member, "hf", model, seed, options)
    store.set_run_status(run_id, "running")
    return run


def finish_member(run: MemberRun, registry, model_info: dict, has_swa: bool, say=print) -> int:
    """Select the member's epoch, copy it to `selected/` with runner.json, store the strategies' picks,
    drop the epoch checkpoints, and mark the member (and the run, once every member is) finished."""
    history = MemberHistory.of(run.member, run.history.values(), has_swa=has_swa)
    selected = best_epoch(history, run.selection["metric"], run.selection["greater_is_better"])
    if selected is None:
        raise TrainingError(f"member {run.member}: no epoch produced a finite {run.selection['metric']}")

    def info(folder):
        write_runner_json(folder, "hf", {}, **model_info)

    checkpoints.save_selected(run.owner, selected, info)
    run.store.finish_member(run.run_id, run.member, "finished", selected_checkpoint=f"epoch-{selected}")
    run.store.log_selections(run.run_id, run.member, pick_all(registry, history))
    checkpoints.finish(run.owner)
    if all(m["status"] == "finished" for m in run.store.members(run.run_id)):
        run.store.set_run_status(run.run_id, "finished")
    say(f"runner: run {run.run_id}, member {run.member}: selected epoch {selected} "
        f"({run.selection['metric']} {run.history[selected].metrics.get(run.selection['metric']):.4f}) "
        f"in {run.store.path}")
    run.held.close()
    return selected


def fail_member(run: MemberRun, error: str) -> None:
    run.store.finish_member(run.run_id, run.member, "failed", error=error)
    run.store.set_run_status(run.run_id, "failed", error=f"{run.member}: {error}")
    run.held.close()


def link_checkpoint(source: Path, owner: checkpoints.MemberDir) -> Path:
    """The model files of Trainer's checkpoint folder `source` (no pickles), linked into the member's
    checkpoints/ under the same name: hard links where the file system allows (no copy, and Trainer's
    `save_total_limit` cannot take them away), else copies."""
    if not (source / "model.safetensors").is_file():
        raise InputError(f"{source}: no model.safetensors; runner keeps safetensors checkpoints only "
                         "(it never loads a pickle)")
    target = owner.checkpoints / source.name
    if target.exists():
        checkpoints.remove(target, owner)
    target.mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file() and f.name not in PICKLES and not f.name.startswith("rng_state"):
            try:
                os.link(f, target / f.name)
            except OSError:  # another file system, or links not allowed: a copy
                shutil.copy2(f, target / f.name)
    return target
