"""Resolution: a structurally valid spec checked against the registered plugins, and turned into one
object per member with every default filled in (what training needs, what `validate` prints)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from runner.core.selection import strategy_for
from runner.errors import SpecError
from runner.spec.adapt import AdaptSpec, merged_adapt
from runner.spec.base import MAX_SEED
from runner.spec.compat import HASHING, STORED
from runner.spec.compute import ComputeSpec
from runner.spec.models import LossSpec, Spec, TrainSpec
from runner.spec.names import member_names
from runner.spec.problems import Problem, dedupe, pydantic_problems, unknown
from runner.spec.track import TrackSpec

SINGULAR = {"backbones": "backbone", "losses": "loss", "datasets": "dataset"}


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
    # [adapt] for this member with max_length and seed filled in, or None (runner.train.adapt)
    adapt: AdaptSpec | None = None
    adapt_loc: str = "adapt"

    def options_dict(self, hashed: bool = False) -> dict[str, Any]:
        """The backbone options with defaults filled in, as JSON-ready values; `hashed`: the form
        content hashes take (runner.spec.compat)."""
        return _dump(self.options, hashed)

    def loss_dict(self, hashed: bool = False) -> dict[str, Any]:
        """The loss with its plugin options expanded, as JSON-ready values."""
        d = {**self.loss.model_dump(mode="json"), **_dump(self.loss_options, False)}
        return _unhashed_removed(d, self.loss_options) if hashed else d

    @property
    def loc(self) -> str:
        return f"members[{self.index}]"


@dataclasses.dataclass
class ResolvedSpec:
    path: Path
    spec: Spec
    members: list[ResolvedMember]
    metric: str  # e.g. "accuracy", "loss"
    greater_is_better: bool
    strategy: str  # the registered strategy [selection] amounts to, e.g. "best_eval_accuracy"
    data_options: BaseModel | None

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self, hashed: bool = False) -> dict[str, Any]:
        """The spec with every default filled in and plugin options expanded (what `validate` prints
        and the store keeps); `hashed`: the form the spec hash is taken of (runner.spec.compat)."""
        d = self.spec.model_dump(mode="json")
        for table in ("sweep", "adapt"):  # a spec without them reads (and hashes) as before they existed
            if d.get(table) is None:
                d.pop(table, None)
        for table, default in (("compute", ComputeSpec()), ("track", TrackSpec())):
            if d.get(table) == default.model_dump(mode="json"):
                d.pop(table)
        if self.data_options is not None:
            d["data"]["options"] = self.data_options.model_dump(mode="json")
        d["selection"]["resolved"] = {"metric": f"eval_{self.metric}", "greater_is_better": self.greater_is_better,
                                      "strategy": self.strategy}
        d["members"] = [
            {
                **({"adapt": m.adapt.model_dump(mode="json")} if m.adapt is not None else {}),
                "name": m.name,
                "backbone": m.backbone,
                "model": m.model,
                "seed": m.seed,
                "options": m.options_dict(hashed),
                "train": m.train.model_dump(mode="json"),
                "loss": m.loss_dict(hashed),
            }
            for m in self.members
        ]
        if hashed:
            # `[loss]` is kept as written (members hold it resolved): a key it sets to a value the
            # plugin leaves out of the hash leaves it here too, or asking for the old behaviour by
            # name would not find the old runs
            same = next((m for m in self.members if m.loss.name == d["loss"].get("name")), None)
            if same is not None:
                d["loss"] = _unhashed_removed(d["loss"], same.loss_options)
        return d

    def spec_hash(self) -> str:
        d = self.to_dict(hashed=True)
        # The strategy is derived from the metric and its direction, which the hash already covers;
        # leaving it out keeps the hashes of runs stored before strategies were recorded.
        del d["selection"]["resolved"]["strategy"]
        # [refit] says what happens after the run, not how it trains: with or without it the spec names
        # the same run, so adding [refit] to a finished spec refits that run instead of training a new
        # one, and every hash stored before [refit] existed stays valid.
        d.pop("refit", None)
        # `repeats` says how many replicas to train, not how one trains: replica 0 is the run the spec
        # names without it (each other replica has its own member seeds, so its own hash)
        d.pop("repeats", None)
        # [compute] says where it trains, not what: a run continues on another backend or cluster
        d.pop("compute", None)
        # [track] says where the numbers are also shown: a tracker added to a finished spec logs that run
        d.pop("track", None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _dump(options: BaseModel | None, hashed: bool) -> dict[str, Any]:
    if options is None:
        return {}
    return options.model_dump(mode="json", context={HASHING: True} if hashed else None)


def _unhashed_removed(d: dict[str, Any], options: BaseModel | None) -> dict[str, Any]:
    """`d` without the keys whose value the options model leaves out of its hashed form."""
    full, hashed = _dump(options, False), _dump(options, True)
    return {k: v for k, v in d.items() if not (k in full and k not in hashed and v == full[k])}


def validate_options(component, kind: str, raw: dict[str, Any], loc: str, problems: list[Problem],
                     stored: bool = False):
    """The component's options model built from `raw`, or None (problems appended). `stored`: `raw`
    is what runner stored, so a key added since reads as what runner did before (runner.spec.compat)."""
    if component.options is None:
        if raw:
            problems.append((loc, f"{SINGULAR[kind]} {component.name!r} takes no options"))
        return None
    try:
        return component.options.model_validate(raw, context={STORED: True} if stored else None)
    except ValidationError as e:
        problems.extend(pydantic_problems(e, loc, model=component.options))
        return None
    except Exception as e:  # a validator that raises TypeError/KeyError...: pydantic passes it through
        problems.append((loc, f"the options model of {SINGULAR[kind]} {component.name!r} "
                              f"({component.origin}) raised {type(e).__name__}: {e}"))
        return None


def resolve(spec: Spec, registry, path: str | Path, stored: bool = False) -> ResolvedSpec:
    """Check the spec against the registered plugins and fill in every per-member value. `stored`:
    the spec is one runner stored with a run (plugin options read as of then: runner.spec.compat)."""
    path = path if isinstance(path, Path) else Path(path)  # an InlineSpec keeps its document
    problems: list[Problem] = []

    dataset = registry.dataset(spec.data.source)
    data_options = None
    if dataset is None:
        problems.append(("data.source", unknown("dataset", spec.data.source, registry.names("datasets"))))
    else:
        data_options = validate_options(dataset, "datasets", spec.data.options, "data.options", problems, stored)

    metric, forced = spec.selection.parsed()
    comp = registry.metric(metric)
    greater = True if forced is None else forced
    if comp is None:
        known = ["eval_loss"] + [f"eval_{n}" for n in registry.names("metrics")]
        problems.append(("selection.metric", unknown("metric", spec.selection.metric, known)))
    elif forced is None:
        greater = comp.greater_is_better
    strategy = strategy_for(registry, metric, greater)
    problems.extend(refit_problems(spec, registry))

    names = member_names(spec.members)
    top_train = spec.train.model_dump(exclude_unset=True)
    top_loss = spec.loss.model_dump(exclude_unset=True)
    members = []
    for i, (m, name) in enumerate(zip(spec.members, names)):
        loc = f"members[{i}]"
        backbone = registry.backbone(m.backbone)
        options = None
        if backbone is None:
            problems.append((f"{loc}.backbone", unknown("backbone", m.backbone, registry.names("backbones"))))
        else:
            options = validate_options(backbone, "backbones", m.options, f"{loc}.options", problems, stored)
            if backbone.takes_model and not m.model:
                problems.append((f"{loc}.model", f"backbone {m.backbone!r} needs a model (a Hub id or a local path)"))
            if not backbone.takes_model and m.model:
                problems.append((f"{loc}.model", f"backbone {m.backbone!r} does not take a model; remove it"))

        try:
            train = TrainSpec.model_validate({**top_train, **m.train})
        except ValidationError as e:
            problems.extend(pydantic_problems(e, f"{loc}.train", model=TrainSpec))
            train = spec.train
        if spec.swa.k > train.epochs:
            where = "swa.k" if "epochs" not in m.train else f"{loc}.train.epochs"
            problems.append((where, f"SWA averages the last {spec.swa.k} epochs but {name} trains only {train.epochs}"))

        same_loss = m.loss.get("name", spec.loss.name) == spec.loss.name
        loss_raw = {**top_loss, **m.loss} if same_loss else dict(m.loss)
        loss_loc = f"{loc}.loss" if m.loss else "loss"
        loss_options = None
        try:
            loss = LossSpec.model_validate(loss_raw)
        except ValidationError as e:
            problems.extend(pydantic_problems(e, loss_loc, model=LossSpec))
            loss = spec.loss
        loss_comp = registry.loss(loss.name)
        if loss_comp is None:
            if not any(p[0] == f"{loss_loc}.name" for p in problems):
                problems.append((f"{loss_loc}.name", unknown("loss", loss.name, registry.names("losses"))))
        else:
            loss_options = validate_options(loss_comp, "losses", loss.options(), loss_loc, problems, stored)

        seed = m.seed if m.seed is not None else spec.seed + i
        if seed > MAX_SEED:
            problems.append((f"{loc}.seed", f"the member's seed is the spec's seed + {i} = {seed}, above "
                                            f"{MAX_SEED}; give the member a seed of its own, or a smaller spec seed"))
        adapt, adapt_loc = _member_adapt(spec, m, i, name, backbone, problems)
        members.append(ResolvedMember(i, name, m.backbone, model_path(m.model, path), options, seed, train, loss,
                                      loss_options, loss_loc, adapt, adapt_loc))

    if problems:
        raise SpecError(path, dedupe(problems))
    return ResolvedSpec(path, spec, members, metric, bool(greater), strategy, data_options)


def _member_adapt(spec: Spec, m, i: int, name: str, backbone, problems: list[Problem]):
    """(the member's AdaptSpec with max_length and seed filled in, or None; where it lives in the file)."""
    own = m.adapt
    loc = f"members[{i}].adapt" if isinstance(own, (dict, bool)) else "adapt"
    raw = merged_adapt(spec.adapt, spec.adapt.model_dump(exclude_unset=True) if spec.adapt else {}, own)
    if raw is None:
        return None, loc
    try:
        adapt = AdaptSpec.model_validate(raw)
    except ValidationError as e:
        problems.extend(pydantic_problems(e, loc, model=AdaptSpec))
        return None, loc
    if backbone is not None and backbone.adapt is None:
        problems.append((loc, f"member {name}: backbone {backbone.name!r} ({backbone.origin}) cannot be adapted "
                              "(its plugin registers no adapt capability); set `adapt = false` on the member, "
                              "or remove [adapt]"))
        return None, loc
    filled = adapt.model_copy(update={"max_length": adapt.max_length or spec.data.max_length,
                                      "seed": spec.seed if adapt.seed is None else adapt.seed})
    return filled, loc


def refit_problems(spec: Spec, registry) -> list[Problem]:
    """`[refit] strategy`: `selected` (the spec's own [selection]) or a registered strategy; `swa` needs SWA."""
    name = spec.refit.strategy
    if name is None:
        return []
    if name != "selected" and registry.selection(name) is None:
        return [("refit.strategy", unknown("selection strategy", name, ["selected"] + registry.names("selections")))]
    if name == "swa" and not spec.swa.k:
        return [("refit.strategy", "'swa' refits each member's SWA window, but [swa] k = 0 (no SWA); "
                                   "set [swa] k, or refit another strategy")]
    return []


def model_path(model: str | None, spec_path: Path) -> str | None:
    """A local model directory is resolved against the spec's folder, as data paths are; anything
    that is not a path there (``klue/bert-base``) is left alone as a Hub id."""
    if not model:
        return model
    local = Path(model).expanduser()
    if not local.is_absolute():
        local = spec_path.resolve().parent / local
    explicit = model.startswith(("./", "../", "~", "/", ".\\", "..\\"))
    try:
        exists = local.exists()
    except OSError:  # a name too long for the file system cannot be a local folder
        exists = False
    return str(local.resolve()) if explicit or exists else model
