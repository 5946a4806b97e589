"""`runner export`: a run's ensemble under one strategy as a self-contained folder, and `load(DIR)`.

The folder needs neither the store, nor the spec, nor `runs/`; it is what a user copies to a server:

    DIR/manifest.json        labels, members, weights, strategy, calibrations, where it came from
    DIR/members/<member>/    the member's checkpoint: model.safetensors, config.json, the tokenizer's
                             files and runner.json (never a pickle: .bin/.pt/.pth/.pkl are not copied)
    DIR/plugins/<file>.py    a copy of each plugin file that registered a member's backbone

A plugin file is only ever run when it is passed as `plugins_dir=` (`--plugins`), as everywhere in
runner; the copy saves looking for it. Built-in and Hugging Face backbones need nothing.

`load(DIR)` returns a `runner.use.predict.Predictor` (`predict_proba(texts)`, `predict(texts)`,
`predict_proba(texts, calibrated=True)` when the run was calibrated before the export).
The folder is written beside its destination and renamed into place when complete, so an
interrupted export leaves no half-written DIR; an existing DIR must be empty.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from runner.core.quiet import quiet_loading
from runner.errors import InputError
from runner.store.checkpoints import TRAINER_STATE
from runner.train import tokenizer_files
from runner.use.choice import Calibration, Choice, MemberChoice
from runner.use.predict import Predictor
from runner.version import __version__

FORMAT = "runner-export-1"
MANIFEST = "manifest.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
NOT_SHIPPED = TRAINER_STATE | {"selection.json"}  # selection.json's facts are in the manifest


def check_target(directory: Path) -> None:
    """InputError, before anything is written, unless DIR can be created (or is an empty folder)."""
    try:
        _check_target(Path(directory))
    except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
        raise InputError(f"DIR {str(directory)[:120]}: cannot be a folder name "
                         f"({getattr(e, 'strerror', None) or e})") from None


def _check_target(directory: Path) -> None:
    here = Path.cwd().resolve()
    if directory.exists() and (directory.resolve() == here or directory.resolve() in here.parents):
        raise InputError(f"DIR {directory}: is the current folder (or holds it); give a new folder name")
    if directory.exists():
        if not directory.is_dir():
            raise InputError(f"DIR {directory}: exists and is a file; give a new folder name")
        if any(directory.iterdir()):
            raise InputError(f"DIR {directory}: exists and is not empty; give a new folder name (nothing was written)")
    parent = directory.absolute().parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"DIR {directory}: cannot be created: {existing} is not a writable folder")


def manifest_for(choice: Choice) -> dict:
    members = []
    for m, w in zip(choice.members, choice.weights):
        info = m.info
        origin = info.get("origin")
        cal = choice.member_calibrations.get(m.name)
        members.append({
            "name": m.name, "checkpoint": m.checkpoint, "epoch": m.epoch, "path": f"members/{m.name}",
            "weight": float(w), "backbone": info.get("backbone"), "model": info.get("model"),
            "options": info.get("options"), "plugin": info.get("plugin"), "origin": origin,
            "plugin_file": f"plugins/{Path(origin).name}" if _plugin_file(origin) else None,
            "calibration": cal.to_dict() if cal else None,
            "precision": m.precision, "eval_batch_size": m.eval_batch_size,
        })
    cal = choice.ensemble_calibration
    return {
        "format": FORMAT,
        "runner_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": dict(choice.run),
        "labels": list(choice.labels),
        "max_length": choice.run.get("max_length"),
        "strategy": choice.strategy,
        "ensemble": {"method": choice.method, "weights": {m.name: float(w) for m, w in zip(choice.members,
                                                                                           choice.weights)},
                     "calibration": cal.to_dict() if cal else None},
        "members": members,
    }


def _plugin_file(origin: str | None) -> bool:
    return bool(origin) and origin.endswith(".py") and Path(origin).is_file()


def export(choice: Choice, directory: Path) -> dict:
    """Write the folder (see the module docstring); returns the manifest."""
    directory = Path(directory)
    check_target(directory)
    manifest = manifest_for(choice)
    parent = directory.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=parent))
    try:
        for m in choice.members:
            target = tmp / "members" / m.name
            target.mkdir(parents=True)
            for f in sorted(m.path.iterdir()):
                if f.is_file() and f.name not in NOT_SHIPPED and not f.name.endswith(PICKLE_SUFFIXES):
                    shutil.copy2(f, target / f.name)
            if not (target / "model.safetensors").is_file():
                raise InputError(f"{m.path}: member {m.name!r} has no model.safetensors to export")
            if m.info.get("max_length"):  # a run trained before runner wrote them so: its copies set here
                tokenizer_files.fit_to_max_length(target, m.info["max_length"])
            origin = m.info.get("origin")
            if _plugin_file(origin):
                (tmp / "plugins").mkdir(exist_ok=True)
                shutil.copy2(origin, tmp / "plugins" / Path(origin).name)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if directory.is_dir():
            directory.rmdir()  # an empty folder (checked above); rmdir refuses anything else
        os.rename(tmp, directory)
    finally:
        if tmp.exists():  # the folder this call made, only when something failed before the rename
            shutil.rmtree(tmp)
    return manifest


def read_manifest(directory: Path) -> dict:
    """The manifest of an exported folder; InputError when DIR is not one."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise InputError(f"{directory}: not a folder written by `runner export`")
    if not path.is_file():
        raise InputError(f"{directory}: a folder, but not one written by `runner export` (it has no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); the export is damaged: export the run again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise InputError(f"{path}: not a runner export manifest (format {found!r}, expected {FORMAT!r})")
    return manifest


def choice_from_manifest(directory: Path, manifest: dict) -> Choice:
    directory = Path(directory)
    try:
        labels = [str(x) for x in manifest["labels"]]
        members, weights = [], []
        for m in manifest["members"]:
            path = directory / m["path"]
            info_path = path / "runner.json"
            if not info_path.is_file() or not (path / "model.safetensors").is_file():
                raise InputError(f"{path}: member {m['name']!r} of the export is missing its runner.json or "
                                 "model.safetensors; the export is incomplete: export the run again")
            members.append(MemberChoice(m["name"], m["checkpoint"], path, json.loads(info_path.read_text()),
                                        precision=m.get("precision") or "auto",
                                        eval_batch_size=m.get("eval_batch_size")))
            weights.append(float(m["weight"]))
        ensemble = manifest.get("ensemble") or {}
        cal = ensemble.get("calibration")
        member_cals = {m["name"]: Calibration.from_dict(m["calibration"]) for m in manifest["members"]
                       if m.get("calibration")}
        w = np.asarray(weights, dtype=np.float64)
        return Choice(labels, manifest["strategy"], members, w / w.sum(), ensemble.get("method", "given"),
                      ensemble_calibration=Calibration.from_dict(cal) if cal else None,
                      member_calibrations=member_cals, run=dict(manifest.get("run") or {}), export_dir=directory)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise InputError(f"{directory / MANIFEST}: a key is missing or malformed ({type(e).__name__}: {e}); "
                         "the export is damaged: export the run again") from None


def load(directory: str | Path, plugins_dir: str | Path | None = None, batch_size: int | None = None,
         device: str | None = None, registry=None, verbose: bool = False) -> Predictor:
    """Load an exported folder: a Predictor with `predict_proba(texts)` and `predict(texts)`.

    Needs no store and no spec. A member whose backbone a plugin file registered needs that plugin:
    pass `plugins_dir` (the export keeps a copy of the file in DIR/plugins). `batch_size` defaults to
    the one training evaluated with; `device` to a GPU when there is one. Quiet: `verbose=True` lets
    transformers show its progress bars while the members load."""
    directory = Path(directory)
    choice = choice_from_manifest(directory, read_manifest(directory))

    def explain(e: InputError) -> InputError:
        copy = directory / "plugins"
        if copy.is_dir() and plugins_dir is None:
            return InputError(f"{e}. This export keeps a copy of the plugin file in {copy}: pass "
                              f"plugins_dir={str(copy)!r} to runner.load, or --plugins {copy} to runner predict")
        return e

    with nullcontext() if verbose else quiet_loading():
        return Predictor.load(choice, registry=registry, plugins_dir=plugins_dir, batch_size=batch_size,
                              device=device, on_missing_plugin=explain)


def size_of(directory: Path) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
