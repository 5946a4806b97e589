"""`runner export`: a run's ensemble under one strategy as a self-contained folder, and `load(DIR)`.

The folder needs neither the store, nor the spec, nor `runs/`; it is what a user copies to a server:

    DIR/manifest.json        labels, members, weights, strategy, calibrations, where it came from
    DIR/members/<member>/    the member's checkpoint: model.safetensors, config.json, the tokenizer's
                             files and runner.json (never a pickle: .bin/.pt/.pth/.pkl are not copied)
    DIR/plugins/<file>.py    a copy of each plugin file that registered a member's backbone
    DIR/README.md            the model card (runner.use.card), when the export is made from a store

A plugin file is only ever run when it is passed as `plugins_dir=` (`--plugins`), as everywhere in
runner; the copy saves looking for it. Built-in and Hugging Face backbones need nothing.

`load(DIR)` returns a `runner.use.predict.Predictor` (`predict_proba(texts)`, `predict(texts)`,
`predict_proba(texts, calibrated=True)` when the run was calibrated before the export).
The folder is written through the guarded writer (runner.store.writes): beside its destination and
renamed into place when complete, so an interrupted export leaves no half-written DIR; an existing
DIR must be empty, and DIR is never inside the store's folders. Each member ships only what a
checkpoint is (safetensors, JSON, the tokenizer's text and model files), listed in the manifest with
their SHA-256, which `load` checks (runner.use.manifest: everything read from DIR is untrusted).
"""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from runner.core.quiet import quiet_loading
from runner.errors import InputError
from runner.store.checkpoints import TRAINER_STATE
from runner.store.writes import Target, folder_target, publish_folder
from runner.train import tokenizer_files
from runner.use.card import CARD
from runner.use.choice import Choice
from runner.use.manifest import FORMAT, MANIFEST, MAX_BATCH_SIZE, choice_from_manifest, read_manifest, sha256_of
from runner.use.onnx import check_export_args, write_onnx
from runner.use.predict import Predictor
from runner.version import __version__

__all__ = ["check_target", "choice_from_manifest", "export", "load", "manifest_for", "read_manifest", "size_of"]

# what a checkpoint is: weights, config and runner.json, the tokenizer's files (json, vocab.txt,
# merges.txt, a sentencepiece .model); anything else in the folder (a pickle, a file a user put there)
# is not shipped
SHIPPED_SUFFIXES = (".safetensors", ".json", ".txt", ".model")  # and the .onnx files written here
NOT_SHIPPED = TRAINER_STATE | {"selection.json"}  # selection.json's facts are in the manifest


def check_target(directory: Path, store: Path | None = None) -> Target:
    """DIR checked by the guarded writer before anything is written: a new folder, or an empty one, outside
    the store's folders (InputError otherwise)."""
    return folder_target(directory, "DIR", store=store)


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


def export(choice: Choice, directory: Path | Target, store: Path | None = None,
           card: tuple[str, dict] | None = None, onnx: bool = False, quantize: str | None = None,
           registry=None, plugins_dir: Path | None = None) -> dict:
    """Write the folder (see the module docstring); returns the manifest. `card`: the model card's text
    and the test metrics (runner.use.card.model_card), written as README.md and the manifest's `metrics`.
    `onnx`: each member also as ONNX, `quantize="int8"` quantized (runner.use.onnx)."""
    check_export_args(onnx, quantize)
    target = directory if isinstance(directory, Target) else check_target(directory, store)
    manifest = manifest_for(choice)
    if card is not None:
        manifest["metrics"] = card[1]

    def fill(tmp: Path) -> None:
        for m, entry in zip(choice.members, manifest["members"]):
            folder = tmp / "members" / m.name
            folder.mkdir(parents=True)
            for f in sorted(m.path.iterdir()):
                if (f.is_file() and not f.is_symlink() and f.name not in NOT_SHIPPED
                        and f.suffix in SHIPPED_SUFFIXES):
                    shutil.copy2(f, folder / f.name)
            if not (folder / "model.safetensors").is_file():
                raise InputError(f"{m.path}: member {m.name!r} has no model.safetensors to export")
            if m.info.get("max_length"):  # a run trained before runner wrote them so: its copies set here
                tokenizer_files.fit_to_max_length(folder, m.info["max_length"])
            if onnx:
                max_length = int(m.info.get("max_length") or choice.run.get("max_length") or 512)
                with quiet_loading():
                    entry["onnx"] = write_onnx(folder, max_length, quantize, registry, plugins_dir)
            entry["files"] = {f.name: sha256_of(f) for f in sorted(folder.iterdir())}
            origin = m.info.get("origin")
            if _plugin_file(origin):
                (tmp / "plugins").mkdir(exist_ok=True)
                shutil.copy2(origin, tmp / "plugins" / Path(origin).name)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if card is not None:
            (tmp / CARD).write_text(card[0], encoding="utf-8")

    publish_folder(target, fill)
    return manifest


def load(directory: str | Path, plugins_dir: str | Path | None = None, batch_size: int | None = None,
         device: str | None = None, registry=None, verbose: bool = False, engine: str = "auto") -> Predictor:
    """Load an exported folder: a Predictor with `predict_proba(texts)` and `predict(texts)`.

    Needs no store and no spec. A member whose backbone a plugin file registered needs that plugin:
    pass `plugins_dir` (the export keeps a copy of the file in DIR/plugins). `batch_size` defaults to
    the one training evaluated with; `device` to a GPU when there is one. Quiet: `verbose=True` lets
    transformers show its progress bars while the members load. `engine`: "auto" runs an export made
    with --onnx in ONNX Runtime when onnxruntime is installed (on the CPU), "torch" or "onnx" ask for one."""
    directory = Path(directory)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or not 1 <= batch_size <= MAX_BATCH_SIZE):
        raise InputError(f"batch_size={batch_size!r}: give an integer from 1 to {MAX_BATCH_SIZE} (texts per forward "
                         "pass), or leave it out for the batch size the run evaluated with")
    choice = choice_from_manifest(directory)

    def explain(e: InputError) -> InputError:
        copy = directory / "plugins"
        if copy.is_dir() and plugins_dir is None:
            return InputError(f"{e}. This export keeps a copy of the plugin file in {copy}: pass "
                              f"plugins_dir={str(copy)!r} to runner.load, or --plugins {copy} to runner predict")
        return e

    with nullcontext() if verbose else quiet_loading():
        return Predictor.load(choice, registry=registry, plugins_dir=plugins_dir, batch_size=batch_size,
                              device=device, on_missing_plugin=explain, engine=engine)


def size_of(directory: Path) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
