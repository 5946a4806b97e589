"""A member's folder on disk, runs/<run_id>/<member>/: epoch checkpoints while it trains, then the
`selected/` and `swa/` checkpoints it ships.

This module holds all of the folder's bookkeeping: listing the epoch checkpoints Trainer wrote,
pruning those neither selection nor SWA can need, cleaning up before a resume, copying the selected
epoch out, checking before a run starts that every path it will write is safe and fits the OS limits,
and `remove_under`: the only function in runner that deletes files. It refuses any path that does not
resolve inside the folder it is given (a member folder, or the adaptation or tokenization cache), so no name,
symlink or stale record can make runner delete anything else.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from runner.errors import TrainingError
from runner.store.filecheck import RUNS

CHECKPOINT_PREFIX = "checkpoint-"
RUNNER_JSON = "runner.json"  # in every checkpoint runner saves: backbone, options, labels (runner.train.backbones)
# What a Trainer checkpoint holds besides the model: needed to resume, never shipped (and the .bin and
# .pt files are pickles, which runner never hands to anyone).
TRAINER_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "training_args.bin",
                 "trainer_state.json"}
# The longest path Trainer writes below a member folder is about
# checkpoints/tmp-checkpoint-<step>/special_tokens_map.json; this leaves room for it and more.
DEEPEST_BELOW_MEMBER = 96
RUN_FILES = (".lock", "_error.log")  # run-level files beside the member folders; never a member name


def runs_root(store) -> Path:
    """runs/ beside the store (`store`: a Store, or its path): every run's member folders."""
    return Path(getattr(store, "path", store)).resolve().parent / RUNS


def safe_component(name: str) -> str | None:
    """Why `name` cannot be one folder name, or None if it can."""
    if not name or name in (".", ".."):
        return "is empty, '.' or '..'"
    if "/" in name or "\\" in name or "\x00" in name:
        return "contains a path separator or NUL"
    if len(name.encode("utf-8")) > 255:
        return "is longer than the 255 bytes a file name may have"
    return None


@dataclass(frozen=True)
class MemberDir:
    """runs/<run_id>/<member>/ beside a store; `runs_root` is the resolved runs/ folder."""

    runs_root: Path
    run_id: str
    member: str

    def __post_init__(self):
        for what, name in (("run id", self.run_id), ("member name", self.member)):
            why = safe_component(name)
            if why is not None:
                raise ValueError(f"{what} {name!r} {why}")

    @property
    def path(self) -> Path:
        return self.runs_root / self.run_id / self.member

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def selected(self) -> Path:
        return self.path / "selected"

    @property
    def swa(self) -> Path:
        return self.path / "swa"


def remove(path: Path, owner: MemberDir) -> None:
    """Delete `path` (a file or a folder tree), which must resolve inside `owner`'s member folder.

    The member folder itself may be removed; a path outside it, the runs/ folder, another run's or
    another member's files, or anything reached through a symbolic link out of the folder, raises
    ValueError and nothing is deleted.
    """
    remove_under(path, Path(os.path.abspath(owner.runs_root)) / owner.run_id / owner.member, allow_root=True)


def remove_under(path: Path, root: Path, allow_root: bool = False) -> None:
    """Delete `path` (a file or a folder tree), which must resolve inside `root`: the only function
    in runner that deletes files (member folders through `remove`, the adaptation and tokenization
    caches through runner.train.adapt, runner.data.tokenized and `runner gc`). `root` itself only with `allow_root`. A path outside `root`, or reached through a
    symbolic link out of it, or a `root` that is itself a symbolic link, raises ValueError and
    nothing is deleted."""
    root = Path(os.path.abspath(root))
    if root.is_symlink():
        raise ValueError(f"refusing to delete under {root}: the folder is a symbolic link")
    target = Path(os.path.abspath(path))
    resolved_root, resolved = root.resolve(), target.resolve()
    inside = ((target == root and allow_root) or root in target.parents) and (
        (resolved == resolved_root and allow_root) or resolved_root in resolved.parents)
    if not inside:
        raise ValueError(f"refusing to delete {path}: it is not inside the folder {root}")
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def trainer_epoch(path: Path) -> int | None:
    """The epoch a Trainer `checkpoint-<step>` folder was saved at (its trainer_state.json), or None."""
    state = path / "trainer_state.json"
    if not state.is_file():
        return None
    try:
        return int(round(json.loads(state.read_text())["epoch"]))
    except (ValueError, KeyError, TypeError, OSError):
        return None


def epoch_checkpoints(owner: MemberDir) -> dict[int, Path]:
    """Complete Trainer checkpoints of the member, by epoch."""
    found = {}
    if owner.checkpoints.is_dir():
        for p in owner.checkpoints.glob(f"{CHECKPOINT_PREFIX}*"):
            e = trainer_epoch(p)
            if e is not None and (p / "model.safetensors").is_file():
                found[e] = p
    return found


def prune(owner: MemberDir, keep: set[int]) -> None:
    """Delete the epoch checkpoints whose epoch is not in `keep`."""
    for e, path in epoch_checkpoints(owner).items():
        if e not in keep:
            remove(path, owner)


def clean_for_resume(owner: MemberDir, stored_epochs: set[int]) -> tuple[int, Path | None]:
    """Before an interrupted member continues: the latest epoch both stored and checkpointed on disk,
    and its checkpoint. Checkpoints of later epochs (saved, but killed before their rows were
    committed) and half-written `tmp-checkpoint-*` folders are deleted; with nothing to resume
    from, the whole member folder is."""
    on_disk = epoch_checkpoints(owner)
    common = sorted(stored_epochs & set(on_disk))
    last = common[-1] if common else 0
    for e, path in on_disk.items():
        if e > last:
            remove(path, owner)
    if owner.checkpoints.is_dir():
        for path in owner.checkpoints.glob("tmp-checkpoint-*"):
            remove(path, owner)
    if not last:
        if owner.path.exists():
            remove(owner.path, owner)
        return 0, None
    return last, on_disk[last]


def save_selected(owner: MemberDir, epoch: int, write_info) -> Path:
    """Copy the selected epoch's weights, config and tokenizer to `selected/` (atomically, through a
    temporary folder); `write_info(folder)` adds runner.json."""
    src = epoch_checkpoints(owner).get(epoch)
    if src is None:
        raise TrainingError(f"member {owner.member}: the checkpoint of the selected epoch {epoch} is missing")
    tmp = owner.path / "selected.tmp"
    if tmp.exists():
        remove(tmp, owner)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in TRAINER_STATE:
            shutil.copy2(f, tmp / f.name)
    write_info(tmp)
    (tmp / "selection.json").write_text(json.dumps({"epoch": epoch, "run_id": owner.run_id,
                                                     "member": owner.member}, indent=2))
    if owner.selected.exists():
        remove(owner.selected, owner)
    tmp.rename(owner.selected)
    return owner.selected


def finish(owner: MemberDir) -> None:
    """A finished member keeps `selected/` and `swa/`; its epoch checkpoints were only for resuming."""
    if owner.checkpoints.exists():
        remove(owner.checkpoints, owner)


def path_problems(runs_root: Path, run_id: str, members: list[str]) -> list[str]:
    """Why the folders a run will write cannot be written, checked before anything is: unsafe
    names, paths beyond the OS limits, or a runs/ that is not a writable folder."""
    problems = []
    for what, name in [("run id", run_id)] + [(f"member {m!r}", m) for m in members]:
        why = safe_component(name)
        if why is not None:
            problems.append(f"the {what} {why}")
    existing = runs_root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if runs_root.exists() and not runs_root.is_dir():
        problems.append(f"{runs_root} exists and is not a folder; runner keeps checkpoints there")
    elif not os.access(existing, os.W_OK):
        problems.append(f"{existing} is not writable; runner keeps checkpoints in {runs_root}")
    try:
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        path_max = 4096
    for m in members:
        deepest = len(os.fsencode(str(runs_root / run_id / m))) + DEEPEST_BELOW_MEMBER
        if deepest > path_max:
            problems.append(f"the checkpoints of member {m!r} would be at paths of about {deepest} bytes, beyond "
                            f"this system's limit of {path_max}; use a store in a shorter folder, or shorter names")
            break
    return problems
