"""An exported folder read back: everything in it is untrusted input.

An export is something people copy between machines and edit by hand, so `read_export` checks it
all before a model is loaded, and a problem is InputError (exit 2) naming the file and the key:

- `manifest.json` is the `Manifest` model: the format, labels (unique), members (unique names, each
  path a folder inside DIR), weights finite, >= 0 and summing to 1 (an `equal` ensemble's all the
  same, and `ensemble.weights` the same as the members'), calibrations finite with a positive
  temperature, batch sizes >= 1, a known precision;
- each member's files: every file the manifest lists is there with its SHA-256 (written by
  `runner export`; an older export without the list is checked by content alone), no other file
  beside them, nothing reached through a link out of DIR; `runner.json`'s label names are the
  manifest's labels, as are `config.json`'s `id2label`. The JSON files, the tokenizer and the
  safetensors themselves are checked when loaded (runner.train.backbones.load_checkpoint), which
  refuses a config that names custom code (`auto_map`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runner.errors import InputError
from runner.store.checkpoints import RUNNER_JSON, safe_component
from runner.use.choice import Calibration, Choice, MemberChoice

FORMAT = "runner-export-1"
MANIFEST = "manifest.json"
MAX_BATCH_SIZE = 65536  # as `runner predict --batch-size`
WEIGHT_SUM_TOLERANCE = 1e-6  # the export writes float64 weights that sum to 1 within about 1e-15


class _Loose(BaseModel):
    # keys a later runner adds are ignored; the values runner reads are strict (no "1" for 1, no nan)
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class CalibrationEntry(_Loose):
    method: str
    temperature: float = Field(gt=0)
    bias: list[float] | None = None

    def calibration(self) -> Calibration:
        return Calibration(self.method, float(self.temperature), None if self.bias is None else tuple(self.bias))


class MemberEntry(_Loose):
    name: str = Field(min_length=1)
    checkpoint: str = Field(min_length=1)
    path: str = Field(min_length=1)
    weight: float = Field(ge=0)
    calibration: CalibrationEntry | None = None
    precision: Literal["auto", "fp32", "fp16", "bf16"] | None = None
    eval_batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE)
    files: dict[str, str] | None = None  # file name -> SHA-256, written by `runner export`
    onnx: str | None = None  # the ONNX file of the member's folder to run (`runner export --onnx`)

    @field_validator("onnx")
    @classmethod
    def _onnx_file(cls, name: str | None) -> str | None:
        if name is not None and (safe_component(name) is not None or not name.endswith(".onnx")):
            raise ValueError(f"{name!r} is not the name of an .onnx file in the member's folder")
        return name

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        why = safe_component(name)
        if why is not None:
            raise ValueError(f"the member name {why}")
        return name

    @field_validator("path")
    @classmethod
    def _inside(cls, path: str) -> str:
        parts = Path(path).parts
        if Path(path).is_absolute() or ".." in parts or "\x00" in path or not parts:
            raise ValueError(f"{path!r} is not a folder inside the export (relative, without '..')")
        return path


class EnsembleEntry(_Loose):
    method: Literal["fit", "equal", "given", "single"] = "given"
    weights: dict[str, float] | Literal["equal"] | None = None
    calibration: CalibrationEntry | None = None


class Manifest(_Loose):
    format: Literal["runner-export-1"]
    labels: list[str] = Field(min_length=2)
    strategy: str = Field(min_length=1)
    members: list[MemberEntry] = Field(min_length=1)
    ensemble: EnsembleEntry = Field(default_factory=EnsembleEntry)
    max_length: int | None = Field(None, ge=1)
    run: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, dict[str, float | None]] | None = None  # test metrics per member and "ensemble" (shown only)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str]) -> list[str]:
        repeated = sorted({x for x in labels if labels.count(x) > 1})
        if repeated or any(not x for x in labels):
            raise ValueError(f"label names must be non-empty and unique (repeated: {repeated})")
        return labels

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        names = [m.name for m in self.members]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"members: the names {repeated} appear more than once; each member is listed once")
        paths = [os.path.normpath(m.path) for m in self.members]
        if len(set(paths)) < len(paths):
            raise ValueError("members: two members have the same path")
        weights = [m.weight for m in self.members]
        total = math.fsum(weights)
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"members: the weights sum to {total:.9g}, not 1; give weights that sum to 1 (runner "
                             "does not guess what other weights meant)")
        ens = self.ensemble
        if ens.method == "equal" or ens.weights == "equal":
            if max(weights) - min(weights) > WEIGHT_SUM_TOLERANCE:
                raise ValueError(f"ensemble: the method is 'equal' but the members' weights are {weights}")
        elif isinstance(ens.weights, dict):
            if set(ens.weights) != set(names) or any(abs(ens.weights[m.name] - m.weight) > WEIGHT_SUM_TOLERANCE
                                                    for m in self.members):
                raise ValueError("ensemble.weights: not the members' weights (members[].weight); the two must agree")
        if ens.method == "single" and len(self.members) != 1:
            raise ValueError(f"ensemble.method: 'single' with {len(self.members)} members")
        for where, cal in [("ensemble.calibration", ens.calibration)] + [
                (f"members.{m.name}.calibration", m.calibration) for m in self.members]:
            if cal is not None and cal.bias is not None and len(cal.bias) != len(self.labels):
                raise ValueError(f"{where}.bias: {len(cal.bias)} values for {len(self.labels)} labels")
        return self


def read_manifest(directory: Path) -> dict:
    """The manifest of an exported folder, checked (`Manifest`), as a dict; InputError when DIR is not
    one or the manifest is damaged."""
    return _manifest(Path(directory)).model_dump()


def _manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise InputError(f"{directory}: not a folder written by `runner export`")
    if not path.is_file():
        raise InputError(f"{directory}: a folder, but not one written by `runner export` (it has no {MANIFEST})")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))  # a hand edit may add a byte-order mark
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); the export is damaged: export the run again") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise InputError(f"{path}: not a runner export manifest (format {found!r}, expected {FORMAT!r})")
    try:
        return Manifest.model_validate(doc)
    except ValidationError as e:
        raise InputError(f"{path}: {_problems(e)}; the export is damaged: export the run again") from None


def _problems(e: ValidationError) -> str:
    out = []
    for err in e.errors()[:3]:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(out)


def choice_from_manifest(directory: Path, manifest: dict | None = None) -> Choice:
    """The Choice an exported folder holds, after every check of the module docstring."""
    directory = Path(directory)
    m = _manifest(directory) if manifest is None else Manifest.model_validate(manifest)
    root = directory.resolve()
    members = []
    for entry in m.members:
        path = directory / entry.path
        info = _member_files(root, path, entry, m.labels)
        if entry.onnx is not None and not (path / entry.onnx).is_file():
            raise InputError(f"{path / entry.onnx}: missing ({root / MANIFEST}: members.{entry.name}.onnx); the "
                             "export is incomplete: export the run again")
        members.append(MemberChoice(entry.name, entry.checkpoint, path, info, precision=entry.precision or "auto",
                                    eval_batch_size=entry.eval_batch_size, onnx=entry.onnx))
    weights = np.asarray([e.weight for e in m.members], dtype=np.float64)
    ens = m.ensemble
    return Choice(list(m.labels), m.strategy, members, weights, ens.method,
                  ensemble_calibration=ens.calibration.calibration() if ens.calibration else None,
                  member_calibrations={e.name: e.calibration.calibration() for e in m.members if e.calibration},
                  run=dict(m.run), export_dir=directory)


def _member_files(root: Path, path: Path, entry: MemberEntry, labels: list[str]) -> dict:
    """The member's runner.json, after checking its folder against the manifest (module docstring)."""
    where = f"{root / MANIFEST}: members.{entry.name}"
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise InputError(f"{where}.path: {entry.path!r} leads out of the export ({resolved}); an export's member "
                         "folders are inside it")
    if not resolved.is_dir():
        raise InputError(f"{path}: member {entry.name!r} of the export is missing; the export is incomplete: "
                         "export the run again")
    present = {}
    for f in sorted(resolved.iterdir()):
        if f.name.startswith("."):
            continue
        if f.is_symlink() and root not in f.resolve().parents:
            raise InputError(f"{f}: a link out of the export (to {f.resolve()}); an export holds its own files")
        present[f.name] = f
    for name in (RUNNER_JSON, "model.safetensors"):
        if name not in present:
            raise InputError(f"{path / name}: member {entry.name!r} of the export is missing its {name}; the export "
                             "is incomplete: export the run again")
    if entry.files is not None:
        extra = sorted(set(present) - set(entry.files))
        if extra:
            raise InputError(f"{path / extra[0]}: not one of the files `runner export` wrote for member "
                             f"{entry.name!r} ({where}.files); remove it, or export the run again")
        for name, digest in entry.files.items():
            if name not in present:
                raise InputError(f"{path / name}: missing; the export is incomplete: export the run again")
            if sha256_of(present[name]) != digest:
                raise InputError(f"{path / name}: changed since the export (its SHA-256 is not the one in "
                                 f"{where}.files); the file is damaged or was edited: export the run again")
    info = _json_object(present[RUNNER_JSON])
    if list(info.get("label_names") or []) != list(labels):
        raise InputError(f"{present[RUNNER_JSON]}: label_names {info.get('label_names')!r} are not the export's "
                         f"labels {labels!r} ({root / MANIFEST}: labels)")
    if "config.json" in present:
        id2label = _json_object(present["config.json"]).get("id2label")
        if id2label is not None:
            try:
                named = [id2label[k] for k in sorted(id2label, key=int)]
            except (TypeError, ValueError, AttributeError):
                named = None
            if named != list(labels):
                raise InputError(f"{present['config.json']}: id2label {id2label!r} does not name the export's labels "
                                 f"{labels!r} in order ({root / MANIFEST}: labels)")
    return info


def _json_object(path: Path) -> dict:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); the file is damaged: export the run again") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: holds a JSON {type(doc).__name__}, not an object; the file is damaged")
    return doc


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
