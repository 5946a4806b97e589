"""The Optuna side of a sweep (runner.search.sweep): storage, study, sampler and pruner, suggesting params,
and the bookkeeping of trials left by a dead worker or asked for at once by two workers.

Storage (runner.search.storage): a journal file (default `runs/_sweeps/<sweep_id>/journal.log` beside the
store, or `[sweep] storage` as a path), or an RDB URL (postgresql://..., sqlite:///...) with Optuna's
heartbeats. A trial left running by a worker that died is failed and queued again with the same params: found by
its worker's lock file being free (`WorkerLock`, one machine or a filesystem with working flock), or
by its heartbeat going stale (RDB storage, Optuna's `RetryHeartbeatStaleTrialCallback`).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.search.plan import SweepPlan

# -- Optuna ------------------------------------------------------------------------------------


def make_study(sp: SweepPlan, storage):
    import optuna

    sw = sp.sweep
    seed = sw.seed if sw.seed is not None else sp.base.resolved.spec.seed
    if sw.sampler == "grid":
        class AskTellGridSampler(optuna.samplers.GridSampler):
            # GridSampler calls study.stop() once the grid is covered, which only works inside
            # study.optimize; this loop asks and tells, and stops by itself (grid_done)
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
    trials = study.get_trials(deepcopy=False)
    # trials a dead worker left, failed and queued again: by the worker locks here, or by Optuna's
    # heartbeats (RDB storage), whose retries list the trials they replace in `retry_history`
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    for t in trials:
        if t.state == TrialState.FAIL and (t.user_attrs.get("stale") or t.number in replaced):
            continue
        if t.state == TrialState.COMPLETE:
            out["finished"] += 1
        elif t.state == TrialState.PRUNED:
            out["pruned"] += 1
        elif t.state == TrialState.FAIL:
            out["failed"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.state == TrialState.WAITING:
            out["waiting"] += 1
    return out


def heartbeat_enabled(study) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def surplus(study, trial, wanted: int) -> bool:
    """Whether `trial` would make the study run more than `wanted` trials: when workers ask at once, the
    running trials with the lowest numbers keep the places left."""
    from optuna.trial import TrialState

    c = counts(study)
    room = wanted - c["finished"] - c["pruned"] - c["failed"]
    running = sorted(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return trial.number not in running[:max(room, 0)]


def grid_done(study, sw) -> bool:
    from optuna.trial import TrialState

    total = 1
    for d in sw.space.values():
        total *= len(d.grid())
    seen = {json.dumps(t.params, sort_keys=True) for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.FAIL or not t.user_attrs.get("stale")}
    return len(seen) >= total
