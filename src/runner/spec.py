"""The experiment spec: pydantic models for the TOML file, and its resolution against the registry.

Loading happens in two steps so that every problem of a file is reported at once:

1. `load_spec(path)` parses TOML and validates the structure (unknown keys, types, ranges, duplicate
   member names, ensemble weights of the wrong length...).
2. `resolve(spec, registry, path)` checks what needs the plugins: backbone/loss/dataset names, each
   plugin's own options model, the selection metric, `[train.trainer_args]` names.

Both raise `SpecError` with every problem as `file: key.path: message`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SpecError
from .plugins import SINGULAR

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# Training arguments that runner sets itself from the spec; naming one in trainer_args is an error
# that says which spec field to use instead.
OWNED_TRAINER_ARGS = {
    "output_dir": "it is runs/<run_id>/<member>/ beside the store",
    "num_train_epochs": "use [train].epochs",
    "per_device_train_batch_size": "use [train].batch_size",
    "per_device_eval_batch_size": "use [train].eval_batch_size",
    "learning_rate": "use [train].learning_rate",
    "lr_scheduler_type": "use [train].lr_scheduler",
    "warmup_steps": "use [train].warmup",
    "weight_decay": "use [train].weight_decay",
    "gradient_accumulation_steps": "use [train].gradient_accumulation_steps",
    "max_grad_norm": "use [train].max_grad_norm",
    "seed": "use the spec's or the member's seed",
    "data_seed": "use the spec's or the member's seed",
    "eval_strategy": "runner evaluates every epoch",
    "save_strategy": "runner saves every epoch",
    "logging_strategy": "runner logs every epoch",
    "metric_for_best_model": "use [selection].metric",
    "greater_is_better": "use [selection].metric with a + or - prefix",
    "load_best_model_at_end": "runner keeps the selected checkpoint itself",
    "save_total_limit": "runner keeps the checkpoints that selection and SWA need",
    "fp16": "use [train].precision",
    "bf16": "use [train].precision",
    "label_smoothing_factor": "use [loss].label_smoothing",
    "remove_unused_columns": "runner builds the model inputs itself",
}


class Strict(BaseModel):
    # strict: TOML has real types, so `batch_size = "32"` is a mistake to report, not a string to coerce
    # (an int is still accepted where a float is expected).
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)


class DataSpec(Strict):
    source: str = "csv"
    train: str | None = None
    valid: str | float | None = 0.1
    test: str | float | None = None
    text_column: str = "text"
    label_column: str = "label"
    labels: list[str] | None = None
    max_length: int = Field(128, ge=8, le=8192)
    special_tokens: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("valid", "test")
    @classmethod
    def _fraction(cls, v):
        if isinstance(v, float) and not 0.0 < v < 1.0:
            raise ValueError("a fraction split must be between 0 and 1 (exclusive)")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v):
        if v is not None:
            if len(v) < 2:
                raise ValueError("a classifier needs at least 2 labels")
            if len(set(v)) != len(v):
                raise ValueError("label names must be unique")
        return v

    @model_validator(mode="after")
    def _fractions_leave_train(self):
        total = sum(x for x in (self.valid, self.test) if isinstance(x, float))
        if total >= 0.9:
            raise ValueError(f"valid and test fractions add up to {total:g}, leaving almost nothing to train on")
        return self


class TrainSpec(Strict):
    epochs: int = Field(3, ge=1, le=1000)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    learning_rate: float = Field(5e-5, gt=0, le=1)
    lr_scheduler: str = "linear"
    warmup: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, ge=0)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    trainer_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("lr_scheduler")
    @classmethod
    def _scheduler(cls, v):
        from transformers.trainer_utils import SchedulerType

        allowed = [s.value for s in SchedulerType]
        if v not in allowed:
            raise ValueError(f"unknown scheduler {v!r}; one of: {', '.join(allowed)}")
        return v

    @field_validator("trainer_args")
    @classmethod
    def _trainer_args(cls, v):
        from transformers import TrainingArguments

        known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
        problems = []
        for key in v:
            if key in OWNED_TRAINER_ARGS:
                problems.append(f"{key!r} is set by runner ({OWNED_TRAINER_ARGS[key]})")
            elif key not in known:
                close = _close_matches(key, known)
                hint = f"; did you mean {close}?" if close else ""
                problems.append(f"{key!r} is not a TrainingArguments field of this transformers version{hint}")
        if "report_to" in v:
            problems.extend(_report_to_problems(v["report_to"]))
        if problems:
            raise ValueError("; ".join(problems))
        return v


def _report_to_problems(value) -> list[str]:
    """`report_to` names integrations whose packages must be installed, or training fails at its start."""
    try:
        from transformers.integrations import get_available_reporting_integrations
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    except ImportError:  # another transformers version: leave it to TrainingArguments
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return [f"'report_to' must be a name or a list of names, not {_describe(value)}"]
    available = set(get_available_reporting_integrations())
    problems = []
    for n in names:
        if n in ("none", "all"):
            continue
        if n not in INTEGRATION_TO_CALLBACK:
            problems.append(f"'report_to' names {n!r}, which is not a reporting integration; one of: "
                            + ", ".join(sorted(INTEGRATION_TO_CALLBACK)))
        elif n not in available:
            problems.append(f"'report_to' names {n!r}, but its package is not installed (pip install it, or "
                            "remove it)")
    return problems


class LossSpec(BaseModel):
    """`name` and `label_smoothing`; every other key goes to the loss plugin's options model."""

    model_config = ConfigDict(extra="allow", strict=True)
    name: str = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SelectionSpec(Strict):
    metric: str = "eval_accuracy"
    early_stopping_patience: int | None = Field(None, ge=1)

    def parsed(self) -> tuple[str, bool | None]:
        """(metric name without eval_ and sign, forced greater_is_better or None to infer)."""
        m = self.metric.strip()
        forced = None
        if m[:1] in "+-":
            forced = m[0] == "+"
            m = m[1:]
        if m.startswith("eval_"):
            m = m[len("eval_"):]
        return m, forced


class SwaSpec(Strict):
    k: int = Field(0, ge=0)


class EnsembleSpec(Strict):
    checkpoint: Literal["selected", "swa", "last"] = "selected"
    weights: list[float] | Literal["equal", "fit"] = "equal"

    @field_validator("weights")
    @classmethod
    def _weights(cls, v):
        if isinstance(v, list):
            if any(not math.isfinite(w) or w < 0 for w in v):
                raise ValueError("weights must be finite and non-negative")
            if sum(v) <= 0:
                raise ValueError("weights must not all be zero")
        return v


class MemberSpec(Strict):
    name: str | None = Field(None, pattern=NAME_PATTERN)
    backbone: str
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    loss: dict[str, Any] = Field(default_factory=dict)


class Spec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    seed: int = 42
    data: DataSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    swa: SwaSpec = Field(default_factory=SwaSpec)
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec)
    members: list[MemberSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self):
        if isinstance(self.ensemble.weights, list) and len(self.ensemble.weights) != len(self.members):
            raise _LocatedError(
                "ensemble.weights",
                f"{len(self.ensemble.weights)} weights for {len(self.members)} members; give one weight per member",
            )
        return self


class _LocatedError(ValueError):
    """A cross-field error that knows which key it belongs to (pydantic would file it under the root)."""

    def __init__(self, loc: str, msg: str):
        self.loc, self.msg = loc, msg
        super().__init__(msg)


# --------------------------------------------------------------------------------------------------
# Resolution: one object per member with everything the trainer needs, defaults filled in.


@dataclasses.dataclass
class ResolvedMember:
    index: int
    name: str
    backbone: str
    model: str | None
    options: BaseModel | None
    seed: int
    train: TrainSpec
    loss: LossSpec
    loss_options: BaseModel | None
    loss_loc: str = "loss"  # where this member's loss options live in the file, for error messages

    def options_dict(self) -> dict[str, Any]:
        """The backbone options with defaults filled in, as JSON-ready values."""
        return self.options.model_dump(mode="json") if self.options is not None else {}


@dataclasses.dataclass
class ResolvedSpec:
    path: Path
    spec: Spec
    members: list[ResolvedMember]
    metric: str  # e.g. "accuracy", "loss"
    greater_is_better: bool
    data_options: BaseModel | None

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        """The spec with every default filled in and plugin options expanded (what `validate` prints)."""
        d = self.spec.model_dump(mode="json")
        if self.data_options is not None:
            d["data"]["options"] = self.data_options.model_dump(mode="json")
        d["selection"]["resolved"] = {"metric": f"eval_{self.metric}", "greater_is_better": self.greater_is_better}
        d["members"] = [
            {
                "name": m.name,
                "backbone": m.backbone,
                "model": m.model,
                "seed": m.seed,
                "options": m.options_dict(),
                "train": m.train.model_dump(mode="json"),
                "loss": {
                    **m.loss.model_dump(mode="json"),
                    **(m.loss_options.model_dump(mode="json") if m.loss_options is not None else {}),
                },
            }
            for m in self.members
        ]
        return d

    def spec_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _loc(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _pydantic_problems(err: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    problems = []
    for e in err.errors():
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _LocatedError):
            problems.append((_join(prefix, ctx_err.loc), ctx_err.msg))
            continue
        loc = [p for p in e["loc"] if p not in ("function-after[_cross_checks(), Spec]",)]
        # pydantic files a Literal|list union error under both branches; keep the message readable
        loc = [p for p in loc if not (isinstance(p, str) and (p.startswith("literal[") or p.startswith("list[")))]
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        msg = msg.removeprefix("Value error, ")
        if e["type"].endswith("_type") and "input" in e:
            msg += f", not {_describe(e['input'])}"
        problems.append((_join(prefix, _loc(loc)), msg))
    # unions report one error per branch; show each (loc, msg) once
    seen, unique = set(), []
    for p in problems:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _describe(value) -> str:
    """How a TOML value of the wrong type reads in an error: `the string '32'`, `a table`..."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"


def _join(prefix: str, loc: str) -> str:
    if not prefix:
        return loc
    if not loc:
        return prefix
    return prefix + ("" if loc.startswith("[") else ".") + loc


def _close_matches(word: str, choices) -> str:
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=2, cutoff=0.75)
    return " or ".join(repr(f) for f in found)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(path, [("", "file not found")]) from None
    except OSError as e:
        raise SpecError(path, [("", f"cannot be read: {e.strerror}")]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(path, [("", f"is not UTF-8 text (byte {e.start})")]) from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(path, [("", f"invalid TOML: {e}")]) from None


def load_spec(path: str | Path) -> Spec:
    """Parse and validate the structure of a spec file; raise SpecError listing every problem."""
    path = Path(path)
    data = read_toml(path)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(path, _pydantic_problems(e)) from None
    problems = _member_problems(spec)
    if problems:
        raise SpecError(path, problems)
    return spec


def _member_problems(spec: Spec) -> list[tuple[str, str]]:
    problems = []
    seen: dict[str, int] = {}
    for i, m in enumerate(spec.members):
        if m.name is None:
            continue
        if m.name in seen:
            problems.append((f"members[{i}].name", f"duplicate member name {m.name!r} (also members[{seen[m.name]}])"))
        else:
            seen[m.name] = i
    return problems


def _member_names(spec: Spec) -> list[str]:
    """Explicit names, else the model's last path component, else the backbone; made unique."""
    base = []
    for m in spec.members:
        if m.name:
            base.append(m.name)
        elif m.model:
            base.append(Path(m.model).name or m.backbone)
        else:
            base.append(m.backbone)
    counts: dict[str, int] = {}
    for b in base:
        counts[b] = counts.get(b, 0) + 1
    explicit = {m.name for m in spec.members if m.name}
    names, used = [], set(explicit)
    for m, b in zip(spec.members, base):
        if m.name or counts[b] == 1:
            names.append(b)
            used.add(b)
            continue
        k = 1
        while f"{b}-{k}" in used:
            k += 1
        names.append(f"{b}-{k}")
        used.add(f"{b}-{k}")
    return names


def _validate_options(component, raw: dict[str, Any], loc: str, problems) -> BaseModel | None:
    if component.options is None:
        if raw:
            problems.append((loc, f"{SINGULAR[component.kind]} {component.name!r} takes no options"))
        return None
    try:
        return component.options.model_validate(raw)
    except ValidationError as e:
        problems.extend(_pydantic_problems(e, loc))
        return None
    except Exception as e:  # a validator that raises TypeError/KeyError...: pydantic passes it through
        problems.append((loc, f"the options model of {SINGULAR[component.kind]} {component.name!r} "
                              f"({component.origin}) raised {type(e).__name__}: {e}"))
        return None


def resolve(spec: Spec, registry, path: str | Path) -> ResolvedSpec:
    """Check the spec against the registered plugins and fill in every per-member value."""
    path = Path(path)
    problems: list[tuple[str, str]] = []

    dataset = registry.get("datasets", spec.data.source)
    data_options = None
    if dataset is None:
        problems.append(("data.source", _unknown("dataset", spec.data.source, registry.names("datasets"))))
    else:
        data_options = _validate_options(dataset, spec.data.options, "data.options", problems)

    metric, forced = spec.selection.parsed()
    greater = forced
    if metric == "loss":
        greater = False if forced is None else forced
    else:
        comp = registry.get("metrics", metric)
        if comp is None:
            known = ["eval_loss"] + [f"eval_{n}" for n in registry.names("metrics")]
            problems.append(("selection.metric", _unknown("metric", spec.selection.metric, known)))
            greater = True
        elif greater is None:
            greater = bool(comp.extra.get("greater_is_better", True))

    names = _member_names(spec)
    top_train = spec.train.model_dump(exclude_unset=True)
    top_loss = spec.loss.model_dump(exclude_unset=True)
    members = []
    for i, (m, name) in enumerate(zip(spec.members, names)):
        loc = f"members[{i}]"
        backbone = registry.get("backbones", m.backbone)
        options = None
        if backbone is None:
            problems.append((f"{loc}.backbone", _unknown("backbone", m.backbone, registry.names("backbones"))))
        else:
            options = _validate_options(backbone, m.options, f"{loc}.options", problems)
            if backbone.extra.get("takes_model") and not m.model:
                problems.append((f"{loc}.model", f"backbone {m.backbone!r} needs a model (a Hub id or a local path)"))
            if not backbone.extra.get("takes_model") and m.model:
                problems.append((f"{loc}.model", f"backbone {m.backbone!r} does not take a model; remove it"))

        try:
            train = TrainSpec.model_validate({**top_train, **m.train})
        except ValidationError as e:
            problems.extend(_pydantic_problems(e, f"{loc}.train"))
            train = spec.train
        if spec.swa.k > train.epochs:
            where = "swa.k" if "epochs" not in m.train else f"{loc}.train.epochs"
            problems.append((where, f"SWA averages the last {spec.swa.k} epochs but {name} trains only {train.epochs}"))

        loss_raw = {**top_loss, **m.loss} if m.loss.get("name", spec.loss.name) == spec.loss.name else dict(m.loss)
        loss_loc = f"{loc}.loss" if m.loss else "loss"
        loss_options = None
        try:
            loss = LossSpec.model_validate(loss_raw)
        except ValidationError as e:
            problems.extend(_pydantic_problems(e, loss_loc))
            loss = spec.loss
        comp = registry.get("losses", loss.name)
        if comp is None:
            if not any(p[0] == f"{loss_loc}.name" for p in problems):
                problems.append((f"{loss_loc}.name", _unknown("loss", loss.name, registry.names("losses"))))
        else:
            loss_options = _validate_options(comp, loss.options(), loss_loc, problems)

        seed = m.seed if m.seed is not None else spec.seed + i
        members.append(ResolvedMember(i, name, m.backbone, _model_path(m.model, path), options, seed, train, loss,
                                      loss_options, loss_loc))

    if problems:
        raise SpecError(path, _dedupe(problems))
    return ResolvedSpec(path, spec, members, metric, bool(greater), data_options)


def _model_path(model: str | None, spec_path: Path) -> str | None:
    """A local model directory is resolved against the spec's folder, as data paths are; anything
    that is not a path there (``klue/bert-base``) is left alone as a Hub id."""
    if not model:
        return model
    local = Path(model).expanduser()
    if not local.is_absolute():
        local = spec_path.resolve().parent / local
    explicit = model.startswith(("./", "../", "~", "/", ".\\", "..\\"))
    return str(local.resolve()) if explicit or local.exists() else model


def _dedupe(problems):
    seen, out = set(), []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = _close_matches(name, known)
    hint = f" (did you mean {close}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; registered: {', '.join(known) or 'none'}"


def load_and_resolve(path: str | Path, registry) -> ResolvedSpec:
    """Both steps. When the structure is wrong, the checks that need the registry still run on the
    file with its broken values removed, so one `runner validate` reports every problem at once."""
    path = Path(path)
    try:
        spec = load_spec(path)
    except SpecError as e:
        if any(loc == "" for loc, _ in e.problems):  # unreadable file or bad TOML: nothing more to check
            raise
        raise SpecError(path, _dedupe(e.problems + _problems_beyond_structure(path, registry))) from None
    return resolve(spec, registry, path)


def _problems_beyond_structure(path: Path, registry) -> list[tuple[str, str]]:
    """Problems hidden behind structural ones: cross-field checks, member names, registry lookups.

    Each value pydantic rejects is removed (so its default applies) and the spec validated again, a
    few rounds at most; a missing required key ends the search, since nothing sensible can stand in
    for it. Checks that compare a removed value with another one are dropped: they would be about
    the default, not about the file.
    """
    data = read_toml(path)
    pruned: list[str] = []
    problems: list[tuple[str, str]] = []
    for round_ in range(5):
        try:
            spec = Spec.model_validate(data)
        except ValidationError as e:
            if round_:
                problems.extend(
                    (loc, msg) for loc, msg in _pydantic_problems(e)
                    if not (msg == "required key is missing" and loc in pruned)
                )
            if not all(_prune(data, err, pruned) for err in e.errors()):
                return problems
            continue
        problems.extend(_member_problems(spec))
        try:
            resolve(spec, registry, path)
        except SpecError as e:
            stale = {"swa.k"} if "train.epochs" in pruned else set()
            problems.extend(
                (loc, msg) for loc, msg in e.problems
                if loc not in stale and not any(loc == p or loc.startswith((p + ".", p + "[")) for p in pruned)
            )
        return problems
    return problems


def _prune(data: dict[str, Any], err, pruned: list[str]) -> bool:
    """Remove the value a pydantic error points at from the raw TOML data; False if it cannot be."""
    if err["type"] == "missing":
        return False
    ctx_err = (err.get("ctx") or {}).get("error")
    parts: list[Any] = ctx_err.loc.split(".") if isinstance(ctx_err, _LocatedError) else list(err["loc"])
    # walk as deep as the data goes (union errors add branch names such as 'str' after the key)
    path, node = [], data
    for p in parts:
        if isinstance(node, dict) and isinstance(p, str) and p in node:
            path.append(p)
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            path.append(p)
            node = node[p]
        else:
            break
    while path and isinstance(path[-1], int):  # removing a list item would renumber the rest
        path.pop()
    if not path or path == ["members"] or path == ["name"]:
        return False
    parent = data
    for p in path[:-1]:
        parent = parent[p]
    del parent[path[-1]]
    pruned.append(_loc(path))
    return True
