"""What predicting with a run under a strategy loads: a `Choice`.

`choose` resolves a strategy to each finished member's checkpoint folder on disk, the ensemble
weights, and any stored calibrations. `runner predict` loads a Choice into a `runner.use.predict.Predictor`;
`runner export` writes one down as its manifest, and `runner.load(DIR)` reads it back.

Only `selected/` and `swa/` of each member are kept on disk, so a strategy is usable when every
member's checkpoint under it is the member's selected epoch or its SWA average (`epoch-N` names one
epoch of every member); any other is refused with the list of strategies that are, never silently
swapped for another checkpoint. Ensemble weights are the ones stored for the spec's ensemble under
the strategy; when none are stored (an ensemble `apply` did not build, such as `swa` in the
quickstart), they are fitted from the stored probabilities with the spec's `[ensemble] weights`, as
`compare` would, and returned unstored (`Choice.built`): the caller decides whether to store it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.core.selection import SELECTED, checkpoint_epoch
from runner.errors import InputError
from runner.posthoc.calibration import apply
from runner.posthoc.ensemble import SPEC_ENSEMBLE, build_ensemble
from runner.posthoc.picks import all_picks
from runner.store.checkpoints import runs_root


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling and an optional per-class bias (runner.posthoc.calibration.apply)."""

    method: str
    temperature: float
    bias: tuple[float, ...] | None = None

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return apply(probs, self.temperature, None if self.bias is None else np.asarray(self.bias))

    def to_dict(self) -> dict:
        return {"method": self.method, "temperature": self.temperature,
                "bias": None if self.bias is None else list(self.bias)}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        bias = d.get("bias")
        return cls(str(d["method"]), float(d["temperature"]), None if bias is None else tuple(float(b) for b in bias))


@dataclass
class MemberChoice:
    name: str
    checkpoint: str  # epoch-N or swa
    path: Path  # the folder with model.safetensors, config, tokenizer and runner.json
    info: dict  # its runner.json: backbone, plugin, origin, options, model, max_length, label_names
    precision: str = "auto"  # [train].precision it was trained with: on a GPU, predictions use the same
    eval_batch_size: int | None = None  # the batch size training evaluated with (the default here too)
    onnx: str | None = None  # an export's ONNX file in `path` (runner.use.onnx), run instead of torch when it can be

    @property
    def epoch(self) -> int | None:
        return checkpoint_epoch(self.checkpoint)


@dataclass
class Choice:
    """Everything a prediction needs besides the models themselves."""

    labels: list[str]
    strategy: str  # the registered strategy (selected resolves to the spec's own, e.g. best_eval_accuracy)
    members: list[MemberChoice]
    weights: np.ndarray  # one per member, summing to 1
    method: str  # fit | equal | given | single
    ensemble_calibration: Calibration | None = None
    member_calibrations: dict[str, Calibration] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)  # run_id, name, spec_hash, dataset_id, max_length
    export_dir: Path | None = None  # set when the choice was read from an exported folder
    built: Any = None  # a runner.posthoc.ensemble.Ensemble built here, when the store held no weights for the strategy


def _on_disk(root: Path, run, member, checkpoint: str) -> Path | None:
    """The folder holding `checkpoint` of `member`, if runner kept it."""
    if checkpoint == "swa":
        folder = root / run.run_id / member.name / "swa"
    elif checkpoint == member.selected_checkpoint:
        folder = root / run.run_id / member.name / "selected"
    else:
        return None
    return folder if (folder / "runner.json").is_file() else None


def choose(store, run, registry, strategy: str = SELECTED) -> Choice:
    """What predicting with `run` under `strategy` loads. Raises InputError (nothing written) for a run
    that is not finished, an unknown strategy, or one whose checkpoints are not all on disk."""
    if run.status != "finished":
        failed = [f"{m.name} ({m.error or 'failed'})" for m in run.members if m.status == "failed"]
        why = f"its members {', '.join(failed)} failed" if failed else "it is still training or was interrupted"
        raise InputError(f"run {run.run_id} is {run.status}, not finished ({why}); `runner apply` with its spec "
                         "resumes it, and predict/export take it once every member has finished")
    if not run.finished:
        raise InputError(f"run {run.run_id} has no finished member")
    root = runs_root(store)
    picks = all_picks(store, run, registry)
    wanted = _checkpoints_for(run, registry, strategy, picks)
    name = run.selected_strategy if strategy == SELECTED else strategy
    members, missing = [], []
    for m in run.finished:
        folder = _on_disk(root, run, m, wanted[m.name])
        if folder is None:
            missing.append(m)
            continue
        train = _member_spec(run, m.name).get("train") or run.spec.get("train") or {}
        members.append(MemberChoice(m.name, wanted[m.name], folder, json.loads((folder / "runner.json").read_text()),
                                    precision=train.get("precision") or "auto",
                                    eval_batch_size=train.get("eval_batch_size") or 2 * int(train.get("batch_size") or 32)))
    if missing:
        raise InputError(_not_on_disk(strategy, run, wanted, missing, root, registry, picks))
    for mc in members:
        if list(mc.info.get("label_names") or run.label_names) != list(run.label_names):
            raise InputError(f"{mc.path}: its labels {mc.info.get('label_names')} are not the run's "
                             f"{list(run.label_names)}; the folder belongs to another run")
    weights, method, built = _weights(store, run, registry, name, members)
    cal = read_calibrations(store, run.run_id, name, members)
    max_length = run.spec.get("data", {}).get("max_length") or members[0].info.get("max_length")
    return Choice(list(run.label_names), name, members, weights, method,
                  ensemble_calibration=cal.pop(None, None), member_calibrations=cal,
                  run={"run_id": run.run_id, "name": run.name, "spec_hash": run.spec_hash,
                       "dataset_id": run.dataset_id, "max_length": max_length}, built=built)


def _member_spec(run, name: str) -> dict:
    return next((m for m in run.spec.get("members", []) if isinstance(m, dict) and m.get("name") == name), {})


def _checkpoints_for(run, registry, strategy: str, picks) -> dict[str, str]:
    finished = [m.name for m in run.finished]
    if strategy == SELECTED:
        unknown = [m.name for m in run.finished if not m.selected_checkpoint]
        if unknown:
            raise InputError(f"run {run.run_id}: member {unknown[0]!r} has no selected checkpoint recorded (a run "
                             "trained by an older runner); it cannot be predicted with")
        return {m.name: m.selected_checkpoint for m in run.finished}
    if checkpoint_epoch(strategy) is not None:  # `epoch-N`: that epoch of every member
        return {m: strategy for m in finished}
    if registry.selection(strategy) is None:
        known = ", ".join([SELECTED] + [s.name for s in registry.selections()] + ["epoch-N"])
        raise InputError(f"--strategy {strategy!r}: no such selection strategy; one of: {known} "
                         "(a plugin's strategy needs --plugins DIR)")
    chosen = picks.get(strategy, {})
    lacking = [m for m in finished if m not in chosen]
    if lacking:
        raise InputError(f"--strategy {strategy!r} picks no checkpoint for member {lacking[0]!r} of run {run.run_id}"
                         + (" (the run has no SWA checkpoints)" if strategy == "swa" else ""))
    return {m: chosen[m] for m in finished}


def _not_on_disk(strategy, run, wanted, missing, root: Path, registry, picks) -> str:
    m = missing[0]
    kept = [f"{m.selected_checkpoint} in {root / run.run_id / m.name / 'selected'}"]
    if (root / run.run_id / m.name / "swa").is_dir():
        kept.append(f"swa in {root / run.run_id / m.name / 'swa'}")
    folder = root / run.run_id / m.name
    if wanted[m.name] in (m.selected_checkpoint, "swa"):  # it should be there: the folder was moved
        return (f"--strategy {strategy!r}: the checkpoint {wanted[m.name]} of member {m.name!r} is missing from "
                f"{folder} (runs/ must stay beside the store it belongs to)")
    usable = [SELECTED] + [s.name for s in registry.selections()
                           if all(_on_disk(root, run, x, picks.get(s.name, {}).get(x.name, "")) is not None
                                  for x in run.finished)]
    return (f"--strategy {strategy!r} picks {wanted[m.name]} for member {m.name!r}, which is not kept on disk: "
            f"runner keeps each member's selected epoch and its SWA average ({'; '.join(kept)}). "
            f"Strategies this run can predict with: {', '.join(dict.fromkeys(usable))}")


def _weights(store, run, registry, strategy: str, members: list[MemberChoice]):
    """(weights, method, built ensemble or None): the spec's ensemble stored for this strategy, else
    built from the stored probabilities with the spec's weights (the caller decides whether to store it)."""
    if len(members) == 1:
        return np.ones(1), "single", None
    rows = store.ensemble_weights(run.run_id, SPEC_ENSEMBLE, strategy)
    stored = {r["member"]: (r["member_checkpoint"], r["weight"], r["method"]) for r in rows}
    if set(stored) == {m.name for m in members} and all(stored[m.name][0] == m.checkpoint for m in members):
        w = np.array([stored[m.name][1] for m in members], dtype=np.float64)
        return w / w.sum(), rows[0]["method"], None
    ens = build_ensemble(store, run, registry, strategy, run.ensemble_weights, name=SPEC_ENSEMBLE, save=False,
                         checkpoints={m.name: m.checkpoint for m in members})
    return np.asarray(ens.weights, dtype=np.float64), ens.method, ens


def read_calibrations(store, run_id: str, strategy: str, members: list[MemberChoice]) -> dict:
    """{None: the ensemble's, member name: the member checkpoint's} from `calibrations`, the latest of
    each (a one-member run's ensemble is its member)."""
    found: dict = {}
    for r in store.calibration_rows(run_id):
        kind, member, checkpoint, method, temperature, bias = (r["kind"], r["member"], r["checkpoint"], r["method"],
                                                                r["temperature"], r["bias"])
        cal = Calibration(method, float(temperature), None if bias is None else tuple(float(b) for b in bias))
        if kind == "ensemble" and member == "ensemble" and checkpoint == strategy:
            found[None] = cal
        for m in members:
            if kind == "member" and member == m.name and checkpoint == m.checkpoint:
                found[m.name] = cal
    if len(members) == 1 and members[0].name in found:
        found[None] = found[members[0].name]
    return found


def check_calibrated(choice: Choice, members: bool = False) -> None:
    """InputError unless the calibrations that `calibrated=True` needs are there: the ensemble's, and
    with `members` each member checkpoint's."""
    lacking = ["the ensemble"] if choice.ensemble_calibration is None else []
    if members:
        lacking += [f"member {m.name}" for m in choice.members if m.name not in choice.member_calibrations]
    if lacking:
        run_id = choice.run.get("run_id", "RUN")
        fix = f"run `runner calibrate {run_id} --strategy {choice.strategy}` first"
        if choice.export_dir is not None:
            where, fix = f"the export {choice.export_dir}", fix + ", then export the run again"
        else:
            where = f"run {run_id}"
        raise InputError(f"--calibrated: {where} has no calibration for {', '.join(lacking)} under strategy "
                         f"{choice.strategy!r}; {fix}")
