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
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import InputError, SpecError

SWEEPS_FOLDER = "_sweeps"


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
    d = resolved.to_dict()
    for key in ("trials", "timeout"):  # more trials or more time continue the same sweep
        d["sweep"].pop(key, None)
    d["dataset_id"] = p.data.dataset_id
    h = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return SweepPlan(p, doc, f"{resolved.name}-sweep-{h[:8]}", strategy, metric, greater)


# -- Optuna ------------------------------------------------------------------------------------


def storage_for(sp: SweepPlan, store_path: Path):
    """Optuna's storage: a journal file (default beside the store), or an RDB URL with heartbeats."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    given = sp.sweep.storage
    if given and "://" in given:
        return optuna.storages.RDBStorage(
            given, heartbeat_interval=30, grace_period=120,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=3)), given
    path = Path(given) if given else sweep_folder(store_path, sp.sweep_id) / "journal.log"
    if not path.is_absolute() and given:
        path = sp.base.spec_path.parent / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path))), str(path)


def sweep_folder(store_path: Path, sweep_id: str) -> Path:
    return Path(store_path).resolve().parent / "runs" / SWEEPS_FOLDER / sweep_id


def make_study(sp: SweepPlan, storage):
    import optuna

    sw = sp.sweep
    seed = sw.seed if sw.seed is not None else sp.base.resolved.spec.seed
    if sw.sampler == "grid":
        class AskTellGridSampler(optuna.samplers.GridSampler):
            # GridSampler calls study.stop() once the grid is covered, which only works inside
            # study.optimize; this loop asks and tells, and stops by itself (_grid_done)
            def after_trial(self, study, trial, state, values) -> None:
                pass

        sampler = AskTellGridSampler({k: d.grid() for k, d in sw.space.items()}, seed=seed)
    elif sw.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
    if sw.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=sw.pruner_startup, n_warmup_steps=sw.pruner_warmup)
    elif sw.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=sum(
            m.train.epochs for m in sp.base.resolved.members))
    else:
        pruner = optuna.pruners.NopPruner()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=sp.sweep_id, storage=storage, sampler=sampler, pruner=pruner,
                               direction="maximize" if sp.greater else "minimize", load_if_exists=True)


def suggest(trial, sw) -> dict[str, Any]:
    params = {}
    for key, d in sw.space.items():
        if d.choices is not None:
            params[key] = trial.suggest_categorical(key, d.choices)
        elif d.is_int:
            params[key] = trial.suggest_int(key, d.low, d.high, step=d.step or 1, log=d.log)
        else:
            params[key] = trial.suggest_float(key, float(d.low), float(d.high), step=d.step, log=d.log)
    return params


class WorkerLock:
    """This worker's lock file, held while it lives: a running trial whose worker's lock is free was
    left by a worker that died, and is retried."""

    def __init__(self, folder: Path):
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{uuid.uuid4().hex}.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self.fd, f"pid {os.getpid()}".encode())

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink(missing_ok=True)

    @staticmethod
    def is_dead(path: str | None) -> bool:
        import fcntl

        if not path or not Path(path).exists():
            return bool(path)
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        Path(path).unlink(missing_ok=True)
        return True


def retry_stale(study, store, sp: SweepPlan, say) -> None:
    """Trials left running by a dead worker: failed in the study, their params queued again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not WorkerLock.is_dead(t.user_attrs.get("worker_lock")):
            continue
        original = t.user_attrs.get("retry_of", t.number)
        study._storage.set_trial_user_attr(t._trial_id, "stale", True)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": original}, skip_if_exists=False)
        store.put_trial(sp.sweep_id, t.number, "failed", t.params, run_id=t.user_attrs.get("run_id"),
                        retry_of=t.user_attrs.get("retry_of"))
        say(f"trial {t.number} was interrupted: it is retried with the same params (its run resumes).")


def counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    out = {"finished": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            out["finished"] += 1
        elif t.state == TrialState.PRUNED:
            out["pruned"] += 1
        elif t.state == TrialState.FAIL and not t.user_attrs.get("stale"):
            out["failed"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.state == TrialState.WAITING:
            out["waiting"] += 1
    return out


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
    return Plan(base.spec_path, base.registry, resolved, data)


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
        value = ens.metrics.get(key)
    return None if value is None or not math.isfinite(value) else float(value)


def run_sweep(sp: SweepPlan, store, progress, say: Callable[[str], None], verbose: bool) -> SweepResult:
    """Run trials until the study has `trials` finished, pruned or failed ones (or the timeout)."""
    from optuna.trial import TrialState

    from .run import apply_plan

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
            if sw.sampler == "grid" and c["waiting"] == 0 and _grid_done(study, sw):
                break
            trial = study.ask()
            trial.set_user_attr("worker_lock", str(lock.path))
            if _surplus(study, trial, sw.trials):  # another worker asked at the same moment for the last one
                study._storage.set_trial_user_attr(trial._trial_id, "stale", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            params = suggest(trial, sw)
            number = trial.user_attrs.get("retry_of", trial.number)
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
        fresh = type(progress)(progress.console) if progress is not None else None  # each run's own lines

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
        if n > 1 and result.run_id is not None:
            store.set_repeat(result.run_id, group, k)
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


def _surplus(study, trial, wanted: int) -> bool:
    """Whether `trial` would make the study run more than `wanted` trials: when workers ask at once, the
    running trials with the lowest numbers keep the places left."""
    from optuna.trial import TrialState

    c = counts(study)
    room = wanted - c["finished"] - c["pruned"] - c["failed"]
    running = sorted(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return trial.number not in running[:max(room, 0)]


def _grid_done(study, sw) -> bool:
    from optuna.trial import TrialState

    total = 1
    for d in sw.space.values():
        total *= len(d.grid())
    seen = {json.dumps(t.params, sort_keys=True) for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.FAIL or not t.user_attrs.get("stale")}
    return len(seen) >= total


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
