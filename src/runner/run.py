"""`runner apply` and `runner validate`: check everything first, then train what is not yet done.

Everything that can be checked before the first training step is checked before the first write:
the spec and plugin options, the data, each member's loss, training arguments and seed, that each
model can be reached, the dry run (runner.dryrun: the real model, Trainer, optimizer and one batch of
each split), the folders the run will write, and that the store can be written. A broken input
therefore never leaves a half-made run behind.
"""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import checkpoints, failures
from .adapt import plan_adaptations
from .data import PreparedData, load_raw, prepare
from .dryrun import check_cheaply, dry_run
from .errors import InputError, SpecError
from .locks import file_lock
from .plugins import Registry, load_registry, plugins_dir_for
from .spec import ResolvedMember, ResolvedSpec, load_and_resolve
from .store import Store

@dataclass
class Plan:
    """A validated spec with its data, ready to train."""

    spec_path: Path
    registry: Registry
    resolved: ResolvedSpec
    data: PreparedData
    adaptations: dict = field(default_factory=dict)  # member -> runner.adapt.Adaptation ([adapt])

    @property
    def spec_hash(self) -> str:
        return self.resolved.spec_hash()


@dataclass
class ApplyResult:
    run_id: str | None
    status: str  # finished | failed | up-to-date
    failed: dict[str, str] = field(default_factory=dict)
    refit: "ApplyResult | None" = None  # the refit's result, when [refit] strategy is set
    replicas: list = field(default_factory=list)  # `repeats = N`: replicas 1 .. N-1 (runner.repeats)


def plan(spec_path: str | Path, plugins_dir: str | Path | None = None, check_models: bool = True,
         overrides: tuple = ()) -> Plan:
    """Parse, resolve and check a spec (with `--set` overrides: (key, value) pairs) and its data,
    without building any model or writing anything."""
    spec_path = Path(spec_path)
    registry = load_registry(plugins_dir_for(spec_path, Path(plugins_dir) if plugins_dir is not None else None))
    resolved = load_and_resolve(spec_path, registry, tuple(overrides))
    spec = resolved.spec
    raw = load_raw(spec.data, registry, spec_path, spec.seed, resolved.data_options)
    data = prepare(spec.data, raw, spec.seed)
    p = Plan(spec_path, registry, resolved, data, plan_adaptations(
        resolved, registry, {k: v.texts for k, v in data.splits.items()}, spec.data.text_column))
    if spec.sweep is not None:
        from .sweep import check_space

        problems = check_space(p, tuple(overrides))
        if problems:
            raise SpecError(spec_path, problems)
    check_cheaply(resolved, registry, data, check_models=check_models)
    return p


def validate(spec_path: str | Path, store_path: str | Path, plugins_dir: str | Path | None = None,
             check_models: bool = True, overrides: tuple = ()) -> Plan:
    """`runner validate`: the plan, the dry run of every member, and the store and run folders checked."""
    p = plan(spec_path, plugins_dir, check_models=check_models, overrides=overrides)
    store = Store(store_path)
    check_store_writable(store)
    _check_paths(store, _run_id_for(p, store, None), p.resolved.members)
    if check_models:
        dry_run(p.resolved, p.registry, p.data, p.resolved.members)
    return p


def check_store_writable(store: Store) -> None:
    store.check_writable()


def new_run_id(store: Store, name: str, spec_hash: str) -> str:
    base = f"{name}-{spec_hash[:8]}"
    taken = set(store.run_ids()) if store.exists() else set()
    if base not in taken:
        return base
    k = 2
    while f"{base}-{k}" in taken:
        k += 1
    return f"{base}-{k}"


def _run_id_for(p: Plan, store: Store, existing: dict | None) -> str:
    return existing["run_id"] if existing is not None else new_run_id(store, p.resolved.name, p.spec_hash)


def _check_paths(store: Store, run_id: str, members: list[ResolvedMember]) -> None:
    problems = checkpoints.path_problems(checkpoints.runs_root(store), run_id, [m.name for m in members])
    if problems:
        raise InputError(f"--store {store.path}: " + "; ".join(problems))


def apply(spec_path: str | Path, store_path: str | Path = "results.duckdb", plugins_dir: str | Path | None = None,
          force: bool = False, progress: Any = None, say: Callable[[str], None] = print,
          verbose: bool = False, overrides: tuple = (), workers: int = 1,
          worker_argv: list[str] | None = None, backend: str | None = None,
          address: str | None = None) -> ApplyResult:
    """Train every member of the spec that the store does not yet hold as finished; then, with
    `[refit] strategy`, the run's refit on train+valid (runner.refit). `overrides`: `--set` pairs;
    `backend`/`address`: `--backend`/`--address` (else `[compute]`; runner.ray_backend)."""
    from . import ddp

    if ddp.distributed():  # under torchrun / accelerate launch: rank 0 leads, the others follow it
        ddp.init()
        if ddp.following():
            ddp.follow()
            return ApplyResult(None, "follower")
    try:
        return _checked_apply(spec_path, store_path, plugins_dir, force, progress, say, verbose, overrides, workers,
                              worker_argv, backend, address)
    finally:
        ddp.finish()


def _checked_apply(spec_path, store_path, plugins_dir, force, progress, say, verbose, overrides, workers,
                   worker_argv, backend, address) -> ApplyResult:
    from . import ddp

    p = plan(spec_path, plugins_dir, overrides=overrides)
    store = Store(store_path)
    check_store_writable(store)
    if ddp.distributed() and (workers > 1 or (backend or p.resolved.spec.compute.backend) == "ray"):
        raise InputError(f"{'--workers' if workers > 1 else '--backend ray'}: under torchrun every process trains "
                         "the same member (DDP); Ray and --workers place whole members or trials, so use one or the "
                         "other ([compute] gpus_per_member > 1 runs torchrun inside each Ray task)")
    if workers > 1 and p.resolved.spec.sweep is None:
        raise InputError(f"--workers {workers}: runs the trials of a sweep at once, and {spec_path} has no [sweep]")
    from .ray_backend import backend_for

    ray = backend_for(p, backend, address)
    try:
        return _apply(p, store, force, progress, say, verbose, overrides, workers, worker_argv, ray)
    finally:
        if ray is not None:
            ray.close()


def _apply(p: Plan, store: Store, force: bool, progress, say, verbose: bool, overrides: tuple, workers: int,
           worker_argv: list[str] | None, ray) -> ApplyResult:
    if p.resolved.spec.sweep is not None:
        from . import sweep_workers
        from .sweep import run_sweep, sweep_folder, sweep_plan

        sp = sweep_plan(p, tuple(overrides))
        _check_paths(store, new_run_id(store, p.resolved.name, p.spec_hash), p.resolved.members)
        dry_run(p.resolved, p.registry, p.data, p.resolved.members)
        store.open()
        store.refresh_views(p.registry.names("metrics"))
        procs = []
        if workers > 1 and ray is None:
            folder = sweep_folder(store.path, sp.sweep_id)
            procs = sweep_workers.start(worker_argv or [], workers, folder)
            say(f"{workers} workers on sweep {sp.sweep_id} (this one and {workers - 1} more; their output: "
                f"{folder}/worker-*.log)")
        try:
            if workers > 1 and ray is not None:  # trials at once, their members Ray tasks; one writer
                say(f"{workers} trials at a time on the Ray cluster (sweep {sp.sweep_id})")
                result = sweep_workers.in_threads(
                    workers, lambda view: run_sweep(sp, store, view, say, verbose, backend=ray), progress)
            else:
                result = run_sweep(sp, store, progress, say, verbose, backend=ray)
        finally:
            problems = sweep_workers.wait(procs)
        if problems:
            for line in problems:
                say(line)
            result.status = "failed"
        return result
    from . import repeats

    if repeats.count(p.resolved) > 1:
        return repeats.apply_all(p, store, force, progress, say, verbose, partial(apply_plan, backend=ray),
                                 repeats.count(p.resolved))
    return apply_plan(p, store, force, progress, say, verbose, backend=ray)


def apply_plan(p: Plan, store: Store, force: bool = False, progress: Any = None, say: Callable[[str], None] = print,
               verbose: bool = False, on_epoch: Callable | None = None,
               on_run: Callable[[str], None] | None = None, backend: Any = None) -> ApplyResult:
    """`apply` of a checked plan (a sweep's trials come here too): `on_epoch(member, record)` is called
    after each stored epoch, `on_run(run_id)` once the run is found, created or already finished;
    `backend` a connected runner.ray_backend.RayBackend, or None to train here."""
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
        return then_refit(p, store, ApplyResult(existing["run_id"], "up-to-date"), progress, say, verbose, backend)
    done = {m["member"] for m in store.members(existing["run_id"]) if m["status"] == "finished"} if existing else set()
    _check_paths(store, _run_id_for(p, store, existing), resolved.members)
    dry_run(resolved, p.registry, p.data, [m for m in resolved.members if m.name not in done])

    store.open()
    store.refresh_views(p.registry.names("metrics"))
    runs_root = checkpoints.runs_root(store)
    # Finding or creating the run happens under a short store-wide lock, so two applies of the same
    # spec cannot both create it; training then holds the run's own lock.
    with ExitStack() as held:
        with file_lock(runs_root / ".apply.lock", f"store {store.path}", wait_s=30):
            run_id = _find_or_create_run(p, store, force, say)
            held.enter_context(file_lock(runs_root / run_id / ".lock", f"run {run_id}"))
        if on_run is not None:
            on_run(run_id)
        failures.context.run_dir = runs_root / run_id
        result = train_run(p, store, run_id, progress, say, verbose, on_epoch=on_epoch, backend=backend)
    return then_refit(p, store, result, progress, say, verbose, backend)


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
    store.create_run(run_id, resolved.name, resolved.to_dict(), spec_hash, data.dataset_id, data.label_names)
    sizes = " / ".join(f"{len(data.splits[s]) if s in data.splits else 0} {s}" for s in ("train", "valid", "test"))
    say(f"Run {run_id}: {len(resolved.members)} members, {sizes} examples.")
    loaded = p.registry.plugin_files
    if loaded:
        say(f"plugins: {', '.join(str(f) for f in loaded)}")
    return run_id


def train_run(p: Plan, store: Store, run_id: str, progress, say, verbose: bool,
              on_epoch: Callable | None = None, backend: Any = None) -> ApplyResult:
    """Train every member of the run not yet finished (resuming an interrupted one), then its
    ensemble; `apply` and `refit` share it. `backend`: a runner.ray_backend.RayBackend, or None to
    train here, one member after another (runner.members)."""
    from .members import train_members
    from .train import MemberJob

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
        if not train_members(p, store, run_id, todo, make_job, result, say, backend):
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


def then_refit(p: Plan, store: Store, result: ApplyResult, progress, say, verbose: bool,
               backend: Any = None) -> ApplyResult:
    """`[refit] strategy`: once the run is finished, its refit on train+valid (runner.refit)."""
    strategy = p.resolved.spec.refit.strategy
    if strategy is None or result.run_id is None:
        return result
    if result.status == "failed":
        say(f"[refit] skipped: run {result.run_id} did not finish.")
        return result
    from .refit import refit

    fresh = progress.fresh() if progress is not None else None  # the refit's own progress lines
    result.refit = refit(store.path, result.run_id, strategy, registry=p.registry, progress=fresh, say=say,
                         verbose=verbose, source=f"{p.spec_path}: refit.strategy", backend=backend)
    if result.refit.status == "failed":
        result.status = "failed"
        result.failed.update({f"refit {m}": e for m, e in result.refit.failed.items()})
    return result


def post_members(p: Plan, store: Store, run_id: str, say) -> None:
    """After every member has trained: the spec's ensemble, from the stored probabilities."""
    from .ensemble import build_ensemble

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
