"""A sweep planned: its id, its objective, the search space checked against the spec, and each
trial's own spec as a run Plan.

A trial's spec is the sweep's spec with the trial's params set (runner.spec.keys), named
`<name>-t<N>`, and its `[sweep]` table dropped: a plain spec, trained by the same code as `runner
apply`. The sweep id hashes the spec without `trials` and `timeout`, so raising either continues the
same sweep.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pydantic import ValidationError

from runner.data.prepare import load_raw, prepare
from runner.errors import SpecError
from runner.search.storage import storage_problems
from runner.spec.keys import set_key
from runner.spec.load import member_problems, read_document
from runner.spec.models import Spec
from runner.spec.problems import pydantic_problems
from runner.spec.resolve import resolve
from runner.spec.sweep import space_problems
from runner.train.adapt import plan_adaptations
from runner.train.job import Plan


@dataclass
class SweepPlan:
    base: Plan  # the plan of the spec with [sweep]
    doc: dict  # the raw spec (with --set overrides) without [sweep]
    sweep_id: str
    objective: str  # a registered selection strategy
    metric: str  # its validation metric without eval_, e.g. "accuracy"
    greater: bool
    # the id an earlier runner gave the same sweep (`<name>-sweep-<hash>`): a sweep stored under it keeps it,
    # since its rows, its journal folder and its Optuna study are named by it (runner.search.sweep)
    legacy_id: str | None = None

    @property
    def sweep(self):
        return self.base.resolved.spec.sweep


def objective_of(registry, resolved, name: str | None) -> tuple[str, str, bool]:
    """(strategy, metric without eval_, greater_is_better) of `[sweep] objective`."""
    strategy = name or resolved.strategy
    if strategy == "selected":
        strategy = resolved.strategy
    comp = registry.selection(strategy)
    if comp is None or comp.metric is None:  # swa, last: the spec's own selection metric
        return strategy, resolved.metric, resolved.greater_is_better
    return strategy, comp.metric.removeprefix("eval_"), bool(comp.greater_is_better)


def check_space(p, overrides: tuple = ()) -> list[tuple[str, str]]:
    """Problems of `[sweep]` against the spec (runner.spec.sweep.space_problems), with the data loaded."""

    resolved, registry = p.resolved, p.registry
    doc, _ = read_document(resolved.path, overrides)

    def check(trial_doc: dict) -> list:
        try:
            spec = Spec.model_validate(trial_doc)
        except ValidationError as e:
            return pydantic_problems(e, model=Spec)
        try:
            resolve(spec, registry, resolved.path)
        except SpecError as e:
            return e.problems
        return member_problems(spec)

    strategies = ["selected"] + [s.name for s in registry.selections()]
    return space_problems(doc, resolved.spec.sweep, check, p.data.num_labels, [m.name for m in resolved.members],
                          strategies) + storage_problems(resolved.spec.sweep.storage, resolved.path)


def sweep_plan(p, overrides: tuple = ()) -> SweepPlan:

    resolved = p.resolved
    doc, _ = read_document(resolved.path, overrides)
    doc = {k: v for k, v in doc.items() if k != "sweep"}
    strategy, metric, greater = objective_of(p.registry, resolved, resolved.spec.sweep.objective)
    d = resolved.to_dict(hashed=True)  # the spec hash's rules (runner.spec.compat)
    for key in ("trials", "timeout"):  # more trials or more time continue the same sweep
        d["sweep"].pop(key, None)
    d["dataset_id"] = p.data.dataset_id
    h = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return SweepPlan(p, doc, f"{resolved.name}-{h[:8]}", strategy, metric, greater,
                     legacy_id=f"{resolved.name}-sweep-{h[:8]}")


# -- running ------------------------------------------------------------------------------------


def trial_plan(sp: SweepPlan, params: dict, number: int):
    """The trial's own spec (params set, [sweep] dropped, named <name>-t<number>) as a run Plan."""

    base = sp.base
    doc = sp.doc
    for key, value in params.items():
        doc = set_key(doc, key, value, list_size=base.data.num_labels)
    doc["name"] = f"{base.resolved.name}-t{number}"
    spec = Spec.model_validate(doc)
    problems = member_problems(spec)
    if problems:
        raise SpecError(base.spec_path, problems)
    resolved = resolve(spec, base.registry, base.spec_path)
    data = base.data
    if any(k.startswith("data.") for k in params):
        raw = load_raw(spec.data, base.registry, base.spec_path, spec.seed, resolved.data_options)
        data = prepare(spec.data, raw, spec.seed)

    return Plan(base.spec_path, base.registry, resolved, data, plan_adaptations(
        resolved, base.registry, {k: v.texts for k, v in data.splits.items()}, spec.data.text_column))
