"""Sweeps: an Optuna search over spec keys in which every trial is an ordinary run (issue 10).

`runner apply` of a spec with `[sweep]` (runner.spec.sweep) runs trials until the study holds
`trials` of them that finished, were pruned or failed:

- each trial's params are set in the raw spec (runner.spec.keys), its name becomes `<name>-t<N>`
  and its `[sweep]` table is dropped: a plain spec, trained by the same code as `runner apply`, so
  every epoch's predictions are stored and `compare`, `predict`, `export` take the trial's run;
- each epoch's validation value of the objective's metric goes to Optuna's pruner
  (`trial.report`, `trial.should_prune`); a pruned trial keeps the epochs it ran (run status pruned);
- the objective is the trial's ensemble (or `[sweep] member`) under the objective strategy, on the
  validation split, read back from the store; the direction is the strategy's;
- the search state is Optuna's own storage: by default a journal file in
  `runs/_sweeps/<sweep_id>/journal.log` beside the store, or `[sweep] storage` (a journal file path,
  or an RDB URL such as postgresql://... for workers on several machines);
- a trial whose worker died (kill -9) is found at the next start: the worker's lock file is free,
  so the trial is marked failed and its params are queued again (`retry_of`); its spec, and so its
  run, is the same, and that run resumes from its last stored epoch like any interrupted `apply`.

`trials` and `trial_params` in the store mirror the study for SQL (store.put_trial).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import InputError, SpecError
from .sweep_study import (WorkerLock, counts, grid_done, heartbeat_enabled, make_study, surplus,
                          retry_stale, storage_for, suggest, sweep_folder)



class TrialPruned(Exception):
    """Raised from a member's epoch callback when the pruner stops the trial."""


@dataclass
class SweepPlan:
    base: Any  # runner.run.Plan of the spec with [sweep]
    doc: dict  # the raw spec (with --set overrides) without [sweep]
    sweep_id: str
    objective: str  # a registered selection strategy
    metric: str  # its validation metric without eval_, e.g. "accuracy"
    greater: bool

    @property
    def sweep(self):
        return self.base.resolved.spec.sweep


@dataclass
class SweepResult:
    sweep_id: str
    status: str  # finished | failed (a trial failed) | up-to-date
    trials: dict[str, int] = field(default_factory=dict)  # status -> count
    best: dict | None = None  # number, value, params, run_id
    run_id: str | None = None  # the best trial's run


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
    from .spec.load import member_problems, read_document
    from .spec.models import Spec
    from .spec.problems import pydantic_problems
    from .spec.resolve import resolve
    from .spec.sweep import space_problems
    from pydantic import ValidationError

    resolved, registry = p.resolved, p.registry
    doc, _ = read_document(resolved.path, overrides)

    def check(trial_doc: dict) -> list:
        try:
            spec = Spec.model_validate(trial_doc)
        except ValidationError as e:
            return pydantic_problems(e)
        try:
            resolve(spec, registry, resolved.path)
        except SpecError as e:
            return e.problems
        return member_problems(spec)

    strategies = ["selected"] + [s.name for s in registry.selections()]
    return space_problems(doc, resolved.spec.sweep, check, p.data.num_labels, [m.name for m in resolved.members],
                          strategies)


def sweep_plan(p, overrides: tuple = ()) -> SweepPlan:
    from .spec.load import read_document

    resolved = p.resolved
    doc, _ = read_document(resolved.path, overrides)
    doc = {k: v for k, v in doc.items() if k != "sweep"}
    strategy, metric, greater = objective_of(p.registry, resolved, resolved.spec.sweep.objective)
    d = resolved.to_dict(hashed=True)  # the spec hash's rules (runner.spec.compat)
    for key in ("trials", "timeout"):  # more trials or more time continue the same sweep
        d["sweep"].pop(key, None)
    d["dataset_id"] = p.data.dataset_id
    h = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return SweepPlan(p, doc, f"{resolved.name}-sweep-{h[:8]}", strategy, metric, greater)


# -- running ------------------------------------------------------------------------------------


def trial_plan(sp: SweepPlan, params: dict, number: int):
    """The trial's own spec (params set, [sweep] dropped, named <name>-t<number>) as a run Plan."""
    from .data import load_raw, prepare
    from .run import Plan
    from .spec.keys import set_key
    from .spec.load import member_problems
    from .spec.models import Spec
    from .spec.resolve import resolve

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
    from .adapt import plan_adaptations

    return Plan(base.spec_path, base.registry, resolved, data, plan_adaptations(
        resolved, base.registry, {k: v.texts for k, v in data.splits.items()}, spec.data.text_column))


def objective_value(sp: SweepPlan, store, run_id: str) -> float | None:
    """The objective on validation: the run's ensemble (or the member) under the objective strategy."""
    from .ensemble import SPEC_ENSEMBLE, build_ensemble

    run = store.run(run_id)
    key = f"eval_{sp.metric}"
    if sp.sweep.member is not None:
        checkpoint = store.selections(run_id, sp.objective).get(sp.sweep.member)
        rows = store.query("SELECT value FROM metrics WHERE run_id = ? AND kind = 'member' AND member = ? AND "
                           "checkpoint = ? AND split = 'valid' AND name = ?",
                           [run_id, sp.sweep.member, checkpoint, sp.metric])[1]
        value = rows[0][0] if rows else None
    else:
        ens = build_ensemble(store, run, sp.base.registry, sp.objective, run.ensemble_weights, name=SPEC_ENSEMBLE)
        # an ensemble has no training loss: best_eval_loss scores it by its NLL, eval_log_loss
        value = ens.metrics.get("eval_log_loss" if sp.metric == "loss" else key)
    return None if value is None or not math.isfinite(value) else float(value)


def run_sweep(sp: SweepPlan, store, progress, say: Callable[[str], None], verbose: bool,
              backend: Any = None) -> SweepResult:
    """Run trials until the study has `trials` finished, pruned or failed ones (or the timeout)."""
    import optuna
    from optuna.trial import TrialState

    from functools import partial

    from .run import apply_plan

    apply_plan = partial(apply_plan, backend=backend)
    sw = sp.sweep
    storage, where = storage_for(sp, store.path)
    study = make_study(sp, storage)
    store.put_sweep(sp.sweep_id, sp.base.resolved.name, sp.base.resolved.to_dict(), where, sp.objective,
                    sw.member, "maximize" if sp.greater else "minimize")
    lock = WorkerLock(sweep_folder(store.path, sp.sweep_id) / "workers")
    start = time.monotonic()
    try:
        retry_stale(study, store, sp, say)
        c = counts(study)
        if c["finished"] + c["pruned"] + c["failed"] >= sw.trials:
            say(f"Sweep {sp.sweep_id} already has {sw.trials} trials; nothing to do (raise [sweep] trials to "
                "continue it).")
            return _result(sp, study, "up-to-date")
        say(f"Sweep {sp.sweep_id}: {sw.trials} trials ({sw.sampler} sampler, {sw.pruner} pruner), objective "
            f"{sp.objective} eval_{sp.metric} of the {'member ' + sw.member if sw.member else 'ensemble'}; "
            f"Optuna storage {where}")
        while True:
            c = counts(study)
            if c["finished"] + c["pruned"] + c["failed"] + c["running"] >= sw.trials:
                break
            if sw.timeout is not None and time.monotonic() - start > sw.timeout:
                say(f"[sweep] timeout of {sw.timeout:g} s reached: no new trial starts.")
                break
            if sw.sampler == "grid" and c["waiting"] == 0 and grid_done(study, sw):
                break
            heartbeat = heartbeat_enabled(study)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeats are experimental, and "meant for Study.optimize"
                if heartbeat:  # RDB storage: trials whose worker stopped beating are failed and queued again
                    optuna.storages.fail_stale_trials(study)
                trial = study.ask()
            trial.set_user_attr("worker_lock", str(lock.path))
            if surplus(study, trial, sw.trials):  # another worker asked at the same moment for the last one
                study._storage.set_trial_user_attr(trial._trial_id, "stale", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            params = suggest(trial, sw)
            # a retried trial keeps the number of the one it replaces: the same name, so the same run resumes
            system = study._storage.get_trial_system_attrs(trial._trial_id)
            number = trial.user_attrs.get("retry_of", system.get("failed_trial", trial.number))
            if heartbeat:
                from optuna.storages._heartbeat import get_heartbeat_thread  # what Study.optimize wraps a trial in

                with get_heartbeat_thread(trial._trial_id, study._storage):
                    _one_trial(sp, store, study, trial, params, number, progress, say, verbose, apply_plan,
                               TrialState)
            else:
                _one_trial(sp, store, study, trial, params, number, progress, say, verbose, apply_plan, TrialState)
    finally:
        lock.close()
    failed = counts(study)["failed"]
    return _result(sp, study, "failed" if failed else "finished")


def _one_trial(sp, store, study, trial, params, number, progress, say, verbose, apply_plan, TrialState) -> None:
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    retry = trial.user_attrs.get("retry_of")
    store.put_trial(sp.sweep_id, trial.number, "running", params, retry_of=retry)
    try:
        p = trial_plan(sp, params, number)
    except (InputError, ValueError) as e:  # a combination the probes of each key alone could not see
        say(f"trial {trial.number} ({shown}): its spec is invalid: {e}")
        study.tell(trial, state=TrialState.FAIL)
        store.put_trial(sp.sweep_id, trial.number, "failed", params, retry_of=retry)
        return
    say(f"trial {trial.number}: {shown}")
    step = [0]

    def on_epoch(member: str, record) -> None:
        if sp.sweep.member is not None and member != sp.sweep.member:
            return
        step[0] += 1
        value = record.metrics.get(f"eval_{sp.metric}")
        if value is None or not math.isfinite(value):
            return
        trial.report(float(value), step[0])
        if trial.should_prune():
            raise TrialPruned(f"pruned by the {sp.sweep.pruner} pruner after epoch {record.epoch} of {member} "
                              f"(eval_{sp.metric} {value:.4f})")

    from . import repeats

    n = sp.sweep.repeats or sp.base.resolved.spec.repeats
    group = repeats.group_id(p)
    values, run_id = [], None
    for k in range(n):
        rp = repeats.replica_plan(p, k)
        fresh = progress.fresh() if progress is not None else None  # each run's own lines

        def on_run(rid: str, k: int = k) -> None:
            if n > 1:
                store.set_repeat(rid, group, k)
            if k == 0:
                trial.set_user_attr("run_id", rid)
                store.put_trial(sp.sweep_id, trial.number, "running", params, run_id=rid, retry_of=retry)

        # the pruner watches replica 0; once it has let a trial through, the other replicas run whole
        result = apply_plan(rp, store, progress=fresh, say=say, verbose=verbose,
                            on_epoch=on_epoch if k == 0 else None, on_run=on_run)
        if k == 0:
            run_id = result.run_id
        if result.status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
            store.put_trial(sp.sweep_id, trial.number, "pruned", params, run_id=run_id, retry_of=retry)
            say(f"trial {trial.number}: pruned")
            return
        value = objective_value(sp, store, result.run_id) if result.status in ("finished", "up-to-date") else None
        if value is None:
            study.tell(trial, state=TrialState.FAIL)
            store.put_trial(sp.sweep_id, trial.number, "failed", params, run_id=run_id, retry_of=retry)
            say(f"trial {trial.number}: failed ({'; '.join(result.failed.values()) or 'no objective value'})")
            return
        values.append(value)
    value = sum(values) / n
    sd = (sum((v - value) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else None
    study.tell(trial, value)
    store.put_trial(sp.sweep_id, trial.number, "finished", params, run_id=run_id, value=value, retry_of=retry,
                    value_sd=sd, repeats=n)
    spread = f" ± {sd:.4f} over {n} seeds" if sd is not None else ""
    say(f"trial {trial.number}: {sp.objective} eval_{sp.metric} {value:.4f}{spread}")


def _result(sp: SweepPlan, study, status: str) -> SweepResult:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = None
    if done:
        t = max(done, key=lambda t: t.value if sp.greater else -t.value)
        best = {"number": t.number, "value": t.value, "params": dict(t.params), "run_id": t.user_attrs.get("run_id")}
    return SweepResult(sp.sweep_id, status, counts(study), best, best["run_id"] if best else None)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)
