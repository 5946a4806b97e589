"""Training a run: finding or creating it in the store, training every member not yet finished
(through a runner.scale backend), then the spec's ensemble. `apply` and `refit` share it.

Finding or creating the run happens under a short store-wide lock, so two applies of the same spec
cannot both create it; training then holds the run's own lock, and any exception escaping it is
logged in the run's folder (runner.core.failures.in_run).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Callable

from runner.core import failures
from runner.core.environment import environment
from runner.core.locks import file_lock
from runner.errors import StoreError
from runner.posthoc.ensemble import build_ensemble
from runner.run.plan import check_paths, new_run_id, run_id_for
from runner.scale.backend import Backend, LocalBackend
from runner.spec import ResolvedMember
from runner.store import Store, checkpoints
from runner.track import TrackedStore, Tracking
from runner.train.dryrun import dry_run
from runner.train.job import ApplyResult, MemberJob, Plan


def train_plan(p: Plan, store: Store, force: bool = False, progress: Any = None, say: Callable[[str], None] = print,
               verbose: bool = False, on_epoch: Callable | None = None,
               on_run: Callable[[str], None] | None = None, backend: Backend | None = None,
               tracking: Tracking | None = None) -> ApplyResult:
    """Train the run of a checked plan (a sweep's trials come here too): `on_epoch(member, record)` is
    called after each stored epoch, `on_run(run_id)` once the run is found, created or already
    finished; with `tracking` ([track]), members, epochs and their ends also go to the trackers
    (runner.track.TrackedStore). An already finished run is `up-to-date`, and nothing is trained."""
    resolved = p.resolved

    existing = None if force else store.latest_run_for(p.spec_hash)
    if existing is not None and existing["dataset_id"] != p.data.dataset_id:
        say(f"The data changed since run {existing['run_id']} (same spec): starting a new run.")
        existing = None
    if existing is not None and existing["status"] == "finished":
        say(f"Run {existing['run_id']} of this spec is already finished in {store.path}; nothing to do "
            "(use --force to train it again as a new run)." if resolved.spec.refit.strategy is None else
            f"Run {existing['run_id']} of this spec is already finished in {store.path}.")
        if on_run is not None:
            on_run(existing["run_id"])
        return ApplyResult(existing["run_id"], "up-to-date")
    done = {m["member"] for m in store.members(existing["run_id"]) if m["status"] == "finished"} if existing else set()
    check_paths(store, run_id_for(p, store, existing), resolved.members)
    checked = dry_run(resolved, p.registry, p.data, [m for m in resolved.members if m.name not in done])
    for line in checked.notes:
        say(line)
    for line in checked.warnings:
        say(f"warning: {line}")

    store.open()
    store.refresh_views(p.registry.names("metrics"))
    runs_root = checkpoints.runs_root(store)
    with ExitStack() as held:
        with file_lock(runs_root / ".apply.lock", f"store {store.path}", wait_s=30):
            run_id = _find_or_create_run(p, store, force, say)
            held.enter_context(file_lock(runs_root / run_id / ".lock", f"run {run_id}"))
        store.put_token_stats(run_id, {m: [s.as_row() for s in stats] for m, stats in checked.tokens.items()})
        if on_run is not None:
            on_run(run_id)
        if tracking is not None:  # the driver's writes, also logged (members in Ray tasks write through it too)
            store = TrackedStore(store, tracking.run(store, run_id))
        with failures.in_run(runs_root / run_id):
            return train_run(p, store, run_id, progress, say, verbose, on_epoch=on_epoch, backend=backend)


def _find_or_create_run(p: Plan, store: Store, force: bool, say) -> str:
    resolved, data, spec_hash = p.resolved, p.data, p.spec_hash
    existing = None if force else store.latest_run_for(spec_hash)
    if existing is not None and (existing["dataset_id"] != data.dataset_id or existing["status"] == "finished"):
        existing = None
    store.put_examples(data.dataset_id, data.splits)
    if existing is not None:
        say(f"Continuing run {existing['run_id']}.")
        return existing["run_id"]
    run_id = new_run_id(store, resolved.name, spec_hash)
    store.create_run(run_id, resolved.name, resolved.to_dict(), spec_hash, data.dataset_id, data.label_names,
                     environment(p.spec_path, p.registry.plugins_dir))
    sizes = " / ".join(f"{len(data.splits[s]) if s in data.splits else 0} {s}" for s in ("train", "valid", "test"))
    say(f"Run {run_id}: {len(resolved.members)} members, {sizes} examples.")
    loaded = p.registry.plugin_files
    if loaded:
        say(f"plugins: {', '.join(str(f) for f in loaded)}")
    return run_id


def train_run(p: Plan, store: Store, run_id: str, progress, say, verbose: bool,
              on_epoch: Callable | None = None, backend: Backend | None = None) -> ApplyResult:
    """Train every member of the run not yet finished (resuming an interrupted one), then its
    ensemble; `apply` and `refit` share it. `backend` trains the members (runner.scale.backend: one
    after another in this process by default, or at once as Ray tasks)."""
    try:
        return _train_run(p, store, run_id, progress, say, verbose, on_epoch, backend)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the run is not left looking alive
        try:
            store.mark_interrupted(run_id, f"interrupted ({failures.signal_name(e)})")
        except StoreError:
            pass  # another process holds the store: the run stays 'running', and a re-run resumes it all the same
        failures.interrupted_run(e, run_id)
        raise


def _train_run(p: Plan, store: Store, run_id: str, progress, say, verbose: bool, on_epoch, backend) -> ApplyResult:
    resolved = p.resolved
    store.set_run_status(run_id, "running")
    result = ApplyResult(run_id, "finished")
    statuses = {m["member"]: m["status"] for m in store.members(run_id)}
    runs_root = checkpoints.runs_root(store)
    todo = [m for m in resolved.members if statuses.get(m.name) != "finished"]

    def make_job(m: ResolvedMember) -> MemberJob:
        return MemberJob(run_id=run_id, member=m, resolved=resolved, data=p.data, registry=p.registry, store=store,
                         owner=checkpoints.MemberDir(runs_root, run_id, m.name), progress=progress, say=say,
                         verbose=verbose, on_epoch=on_epoch, adaptation=p.adaptations.get(m.name))

    if progress is not None:
        progress.start(resolved.members, label=run_id)
        for m in resolved.members:
            if statuses.get(m.name) == "finished":
                progress.member_skipped(m.name)
    try:
        if not (backend or LocalBackend()).train_members(p, store, run_id, todo, make_job, result, say):
            return result  # pruned: the run stops here, with its epochs stored
    finally:
        if progress is not None:
            progress.stop()

    post_members(p, store, run_id, say)
    status = "failed" if result.failed else "finished"
    error = "; ".join(f"{k}: {v}" for k, v in result.failed.items()) or None
    store.set_run_status(run_id, status, error=error)
    result.status = status
    p.registry.hook.on_run_end(run_id=run_id, status=status, store_path=str(store.path))
    return result


def post_members(p: Plan, store: Store, run_id: str, say) -> None:
    """After every member has trained: the spec's ensemble, from the stored probabilities."""
    spec = p.resolved.spec
    run = store.run(run_id)
    if len(run.finished) < 2:
        return
    strategy = spec.ensemble.checkpoint
    if strategy == "swa" and not spec.swa.k:
        say("[ensemble] checkpoint = 'swa' but [swa] k = 0: no SWA checkpoints to ensemble; skipped.")
        return
    ens = build_ensemble(store, run, p.registry, strategy, spec.ensemble.weights)
    weights = ", ".join(f"{m} {w:.3f}" for m, w in zip(ens.members, ens.weights))
    keys = dict.fromkeys([f"eval_{p.resolved.metric}", "eval_accuracy", "test_accuracy", "test_log_loss"])
    shown = ", ".join(f"{k} {ens.metrics[k]:.4f}" for k in keys if k in ens.metrics)
    say(f"Ensemble over {ens.strategy} ({ens.method} weights: {weights}): {shown}")
