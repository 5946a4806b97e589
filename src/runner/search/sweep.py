"""Sweeps: an Optuna search over spec keys in which every trial is an ordinary run.

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

import math
import time
import warnings
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

import optuna
from optuna.trial import TrialState

from runner.errors import InputError, TrialPruned
from runner.posthoc.ensemble import SPEC_ENSEMBLE, build_ensemble
from runner.run import repeats
from runner.run.apply import apply_plan
from runner.run.plan import check_paths, new_run_id
from runner.scale.backend import Backend, LocalBackend
from runner.search import workers as sweep_workers
from runner.search.plan import SweepPlan, sweep_plan, trial_plan
from runner.search.storage import storage_for, sweep_folder
from runner.search.study import (
    WorkerLock,
    counts,
    grid_done,
    heartbeat_enabled,
    make_study,
    retry_stale,
    suggest,
    surplus,
)
from runner.store import Store
from runner.train.dryrun import dry_run
from runner.train.job import Plan


@dataclass
class SweepResult:
    sweep_id: str
    status: str  # finished | failed (a trial failed) | up-to-date
    trials: dict[str, int] = field(default_factory=dict)  # status -> count
    best: dict | None = None  # number, value, params, run_id
    run_id: str | None = None  # the best trial's run


def objective_value(sp: SweepPlan, store, run_id: str) -> float | None:
    """The objective on validation: the run's ensemble (or the member) under the objective strategy."""
    run = store.run(run_id)
    key = f"eval_{sp.metric}"
    if sp.sweep.member is not None:
        checkpoint = store.selections(run_id, sp.objective).get(sp.sweep.member)
        value = store.checkpoint_value(run_id, "member", sp.sweep.member, checkpoint, "valid", sp.metric)
    else:
        ens = build_ensemble(store, run, sp.base.registry, sp.objective, run.ensemble_weights, name=SPEC_ENSEMBLE)
        # an ensemble has no training loss: best_eval_loss scores it by its NLL, eval_log_loss
        value = ens.metrics.get("eval_log_loss" if sp.metric == "loss" else key)
    return None if value is None or not math.isfinite(value) else float(value)


def apply_sweep(p: Plan, store: Store, progress, say: Callable[[str], None], verbose: bool, overrides: tuple = (),
                workers: int = 1, worker_argv: list[str] | None = None, backend: Backend | None = None) -> SweepResult:
    """`runner apply` of a spec with `[sweep]`: the dry run, then trials until the study has enough.
    `workers` > 1: that many processes on this machine (runner.search.workers), or with a Ray backend
    that many trials at once in threads of this process, their members Ray tasks (one writer)."""
    backend = backend or LocalBackend()
    sp = sweep_plan(p, tuple(overrides))
    check_paths(store, new_run_id(store, p.resolved.name, p.spec_hash), p.resolved.members)
    dry_run(p.resolved, p.registry, p.data, p.resolved.members)
    store.open()
    store.refresh_views(p.registry.names("metrics"))
    sp = continued(sp, store)
    procs = []
    if workers > 1 and backend.name != "ray":
        folder = sweep_folder(store.path, sp.sweep_id)
        procs = sweep_workers.start(worker_argv or [], workers, folder)
        say(f"{workers} workers on sweep {sp.sweep_id} (this one and {workers - 1} more; their output: "
            f"{folder}/worker-*.log)")
    try:
        if workers > 1 and backend.name == "ray":  # trials at once, their members Ray tasks; one writer
            say(f"{workers} trials at a time on the Ray cluster (sweep {sp.sweep_id})")
            result = sweep_workers.in_threads(
                workers, lambda view: run_sweep(sp, store, view, say, verbose, backend=backend), progress)
        else:
            result = run_sweep(sp, store, progress, say, verbose, backend=backend)
    finally:
        problems = sweep_workers.wait(procs)
    if problems:
        for line in problems:
            say(line)
        result.status = "failed"
    return result


def continued(sp: SweepPlan, store: Store) -> SweepPlan:
    """The plan under the id the store already knows the sweep by: an earlier runner's `<name>-sweep-<hash>`
    when that sweep is stored (its rows) or started (its journal folder), else `<name>-<hash>`."""
    old = sp.legacy_id
    if old and (store.find_sweep_id(old) == old or sweep_folder(store.path, old).is_dir()):
        return replace(sp, sweep_id=old)
    return sp


def run_sweep(sp: SweepPlan, store, progress, say: Callable[[str], None], verbose: bool,
              backend: Backend | None = None) -> SweepResult:
    """Run trials until the study has `trials` finished, pruned or failed ones (or the timeout)."""
    apply = partial(apply_plan, backend=backend)
    sw = sp.sweep
    storage, where = storage_for(sp, store.path, say)
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
                    _one_trial(sp, store, study, trial, params, number, progress, say, verbose, apply,
                               TrialState)
            else:
                _one_trial(sp, store, study, trial, params, number, progress, say, verbose, apply, TrialState)
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
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = None
    if done:
        t = max(done, key=lambda t: t.value if sp.greater else -t.value)
        best = {"number": t.number, "value": t.value, "params": dict(t.params), "run_id": t.user_attrs.get("run_id")}
    return SweepResult(sp.sweep_id, status, counts(study), best, best["run_id"] if best else None)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)
