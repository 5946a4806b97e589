"""Applying a checked plan: train its run (runner.run.training), its replicas over seeds
(`repeats = N`: runner.run.repeats) and, with `[refit] strategy`, its refit on train+valid
(runner.run.refit). A sweep's trials are applied here one by one (runner.search).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from runner.run import repeats
from runner.run.refit import refit
from runner.run.training import train_plan
from runner.scale.backend import Backend
from runner.store import Store
from runner.track import Tracking
from runner.train.job import ApplyResult, Plan


def apply_run(p: Plan, store: Store, force: bool = False, progress: Any = None, say: Callable[[str], None] = print,
              verbose: bool = False, backend: Backend | None = None, tracking: Tracking | None = None) -> ApplyResult:
    """The plan's run, or its replicas 0 .. N-1 when the spec has `repeats = N`; `tracking`: [track]'s
    trackers (runner.track), which log every run trained here."""
    n = repeats.count(p.resolved)
    if n > 1:
        return repeats.apply_all(p, store, force, progress, say, verbose,
                                 partial(apply_plan, backend=backend, tracking=tracking), n)
    return apply_plan(p, store, force, progress, say, verbose, backend=backend, tracking=tracking)


def apply_plan(p: Plan, store: Store, force: bool = False, progress: Any = None, say: Callable[[str], None] = print,
               verbose: bool = False, on_epoch: Callable | None = None,
               on_run: Callable[[str], None] | None = None, backend: Backend | None = None,
               tracking: Tracking | None = None) -> ApplyResult:
    """Train the plan's run (runner.run.training.train_plan: `on_epoch`, `on_run`, `tracking` as there),
    then its refit when the spec has `[refit] strategy`."""
    result = train_plan(p, store, force, progress, say, verbose, on_epoch=on_epoch, on_run=on_run, backend=backend,
                        tracking=tracking)
    if result.status == "pruned":
        return result
    return then_refit(p, store, result, progress, say, verbose, backend)


def then_refit(p: Plan, store: Store, result: ApplyResult, progress, say, verbose: bool,
               backend: Any = None) -> ApplyResult:
    """`[refit] strategy`: once the run is finished, its refit on train+valid (runner.run.refit)."""
    strategy = p.resolved.spec.refit.strategy
    if strategy is None or result.run_id is None:
        return result
    if result.status == "failed":
        say(f"[refit] skipped: run {result.run_id} did not finish.")
        return result
    fresh = progress.fresh() if progress is not None else None  # the refit's own progress lines
    result.refit = refit(store.path, result.run_id, strategy, registry=p.registry, progress=fresh, say=say,
                         verbose=verbose, source=f"{p.spec_path}: refit.strategy", backend=backend)
    if result.refit.status == "failed":
        result.status = "failed"
        result.failed.update({f"refit {m}": e for m, e in result.refit.failed.items()})
    return result
