"""`runner apply` and `runner validate`: check everything first, then train what is not yet done.

Everything that can be checked before the first training step is checked before the first write
to the store: the spec and plugin options, the data, each member's loss and training arguments, that
each model can be reached, and that the store can be written. A broken input therefore never leaves
a half-made run behind.
"""

from __future__ import annotations

import os
import shutil
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import PreparedData, load_raw, prepare
from .errors import ModelLoadError, SpecError, StoreError, TrainingError
from .locks import file_lock
from .plugins import Registry, default_plugins_dir, load_registry
from .spec import ResolvedSpec, load_and_resolve
from .store import Store


@dataclass
class Plan:
    """A validated spec with its data, ready to train."""

    spec_path: Path
    registry: Registry
    resolved: ResolvedSpec
    data: PreparedData
    plugins_dir: Path | None

    @property
    def spec_hash(self) -> str:
        return self.resolved.spec_hash()


@dataclass
class ApplyResult:
    run_id: str | None
    status: str  # finished | failed | up-to-date
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    resumed: dict[str, int] = field(default_factory=dict)


def plan(spec_path: str | Path, plugins_dir: str | Path | None = None, check_models: bool = True) -> Plan:
    """Parse, resolve and check a spec and its data without writing anything."""
    spec_path = Path(spec_path)
    pdir = Path(plugins_dir) if plugins_dir is not None else default_plugins_dir(spec_path)
    if plugins_dir is not None and not pdir.is_dir():
        from .errors import InputError

        raise InputError(f"--plugins {plugins_dir}: not a directory")
    registry = load_registry(pdir)
    resolved = load_and_resolve(spec_path, registry)
    spec = resolved.spec
    raw = load_raw(spec.data, registry, spec_path, spec.seed, resolved.data_options)
    data = prepare(spec.data, raw, spec.seed)
    check_members(resolved, registry, data, check_models=check_models)
    return Plan(spec_path, registry, resolved, data, pdir)


def check_members(resolved: ResolvedSpec, registry: Registry, data: PreparedData, check_models: bool) -> None:
    """Per-member checks that need the data: loss options, training arguments, model reachability."""
    from .train import build_loss, training_arguments

    problems: list[tuple[str, str]] = []
    for m in resolved.members:
        try:
            build_loss(m, registry, data, resolved.path)
        except SpecError as e:
            problems.extend(e.problems)
        except Exception as e:  # a loss plugin rejecting its options for this data, not a runner bug
            origin = registry.get("losses", m.loss.name).origin
            problems.append((m.loss_loc, f"loss {m.loss.name!r} ({origin}) rejected its options: "
                                         f"{type(e).__name__}: {e}"))
        try:
            training_arguments(m, resolved, Path(os.devnull))
        except (ValueError, TypeError) as e:
            where = f"members[{m.index}].train.trainer_args" if m.train.trainer_args else "train"
            problems.append((where, str(e).splitlines()[0]))
    if problems:
        # members sharing the top-level [loss] would each report the same problem
        raise SpecError(resolved.path, list(dict.fromkeys(problems)))
    if check_models:
        for m in resolved.members:
            check = registry.get("backbones", m.backbone).extra.get("check")
            if check is not None and m.model:
                try:
                    check(m.model, m.options)
                except ModelLoadError as e:
                    raise ModelLoadError(f"{resolved.path}: members[{m.index}].model: {e}") from None


def check_store_writable(store: Store) -> None:
    parent = store.path.resolve().parent
    if store.path.is_dir():
        raise StoreError(f"{store.path}: is a folder; --store needs a file path such as {store.path / 'results.duckdb'}")
    if store.exists():
        if not os.access(store.path, os.W_OK):
            raise StoreError(f"{store.path}: the store file is not writable")
        store.pending_migrations()  # refuses a non-DuckDB file or a newer schema, read-only
    elif not parent.is_dir():
        raise StoreError(f"{store.path}: the folder {parent} does not exist")
    elif not os.access(parent, os.W_OK):
        raise StoreError(f"{store.path}: cannot create the store, the folder {parent} is not writable")


def new_run_id(store: Store, name: str, spec_hash: str) -> str:
    base = f"{name}-{spec_hash[:8]}"
    taken = set(store.run_ids())
    if base not in taken:
        return base
    k = 2
    while f"{base}-{k}" in taken:
        k += 1
    return f"{base}-{k}"


def stored_history(store: Store, run_id: str, member: str, upto: int) -> dict[int, dict[str, float]]:
    rows = store.query_dicts(
        "SELECT epoch, split, name, value FROM metrics WHERE run_id = ? AND member = ? "
        "AND checkpoint = 'epoch-' || epoch AND epoch <= ?",
        [run_id, member, upto],
    )
    history: dict[int, dict[str, float]] = {}
    for r in rows:
        prefix = {"valid": "eval"}.get(r["split"], r["split"])
        history.setdefault(r["epoch"], {})[f"{prefix}_{r['name']}"] = r["value"]
    return history


def prepare_resume(store: Store, run_id: str, member: str, out_dir: Path):
    """Where an interrupted member continues: the latest epoch both stored and checkpointed on disk.

    Rows of later epochs (stored after a checkpoint that did not survive) and checkpoints of later
    epochs (saved, but killed before their rows were committed) are dropped, so the resumed member
    writes each epoch exactly once.
    """
    from .train import epoch_checkpoints

    stored = set(store.stored_epochs(run_id, member))
    on_disk = epoch_checkpoints(out_dir / "checkpoints")
    common = sorted(stored & set(on_disk))
    last = common[-1] if common else 0
    for e, path in on_disk.items():
        if e > last:
            shutil.rmtree(path, ignore_errors=True)
    for path in (out_dir / "checkpoints").glob("tmp-checkpoint-*") if (out_dir / "checkpoints").is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)
    with store.transaction() as con:
        for table in ("metrics", "predictions"):
            con.execute(
                f"DELETE FROM {table} WHERE run_id = ? AND member = ? AND (epoch > ? OR checkpoint NOT LIKE 'epoch-%')",
                [run_id, member, last],
            )
    if not last:
        shutil.rmtree(out_dir, ignore_errors=True)
        return None, {}
    return on_disk[last], stored_history(store, run_id, member, last)


def apply(spec_path: str | Path, store_path: str | Path = "results.duckdb", plugins_dir: str | Path | None = None,
          force: bool = False, progress: Any = None, say=print) -> ApplyResult:
    """Train every member of the spec that the store does not yet hold as finished."""
    p = plan(spec_path, plugins_dir)
    store = Store(store_path)
    check_store_writable(store)
    resolved = p.resolved

    store.open()
    runs_root = store.path.resolve().parent / "runs"
    # Finding or creating the run happens under a short store-wide lock, so two applies of the same
    # spec cannot both create it; training then holds the run's own lock.
    with ExitStack() as held:
        with file_lock(runs_root / ".apply.lock", f"store {store.path}", wait_s=30):
            run_id, existing = _find_or_create_run(p, store, force, say)
            if run_id is None:
                return ApplyResult(existing["run_id"], "up-to-date", skipped=[m.name for m in resolved.members])
            held.enter_context(file_lock(runs_root / run_id / ".lock", f"run {run_id}"))
        return _train_run(p, store, run_id, progress, say)


def _find_or_create_run(p: Plan, store: Store, force: bool, say):
    """(run_id, existing run row); run_id is None when the spec's run is already finished."""
    resolved, data, spec_hash = p.resolved, p.data, p.spec_hash
    existing = None if force else store.latest_run_for(spec_hash)
    if existing is not None and existing["dataset_id"] != data.dataset_id:
        say(f"The data changed since run {existing['run_id']} (same spec): starting a new run.")
        existing = None
    if existing is not None and existing["status"] == "finished":
        say(f"Run {existing['run_id']} of this spec is already finished in {store.path}; nothing to do "
            "(use --force to train it again as a new run).")
        return None, existing

    store.put_examples(data.dataset_id, data.splits)
    if existing is None:
        run_id = new_run_id(store, resolved.name, spec_hash)
        store.create_run(run_id, resolved.name, resolved.to_dict(), spec_hash, data.dataset_id, data.label_names)
        say(f"Run {run_id}: {len(resolved.members)} members, {len(data.splits['train'])} train / "
            f"{len(data.splits['valid'])} valid / {len(data.splits['test']) if 'test' in data.splits else 0} test "
            f"examples.")
    else:
        run_id = existing["run_id"]
        say(f"Continuing run {run_id}.")
    return run_id, existing


def _train_run(p: Plan, store: Store, run_id: str, progress, say) -> ApplyResult:
    from .train import MemberJob, train_member

    resolved, data = p.resolved, p.data
    store.set_run_status(run_id, "running")
    result = ApplyResult(run_id, "finished")
    statuses = {m["member"]: m["status"] for m in store.members(run_id)}
    runs_dir = store.path.resolve().parent / "runs" / run_id
    if progress is not None:
        progress.start(resolved.members)
    try:
        for m in resolved.members:
            if statuses.get(m.name) == "finished":
                result.skipped.append(m.name)
                if progress is not None:
                    progress.member_skipped(m.name)
                continue
            out_dir = runs_dir / m.name
            resume_from, history = (None, {})
            if m.name in statuses:
                resume_from, history = prepare_resume(store, run_id, m.name, out_dir)
                if resume_from is not None:
                    result.resumed[m.name] = max(history)
                    say(f"{m.name}: resuming after epoch {max(history)}.")
            store.start_member(run_id, m.name, m.backbone, m.model, m.seed,
                               m.options_dict())
            job = MemberJob(run_id=run_id, member=m, resolved=resolved, data=data, registry=p.registry, store=store,
                            out_dir=out_dir, swa_k=resolved.spec.swa.k, progress=progress,
                            resume_from=resume_from, history=history, say=say)
            try:
                selected = train_member(job)
            except TrainingError as e:
                store.finish_member(run_id, m.name, "failed", error=str(e))
                result.failed[m.name] = str(e)
                say(f"{m.name}: failed: {e}")
                p.registry.hook.on_member_end(run_id=run_id, member=m.name, status="failed", selected_epoch=None)
                continue
            except StoreError:
                # The store stayed locked past the timeout: the member stays 'running' on disk and in
                # the store, and the same `runner apply` resumes it from its last stored epoch.
                raise
            except Exception as e:
                # A bug (in runner or a plugin): record it against the member, keep the traceback visible
                store.finish_member(run_id, m.name, "failed", error=f"{type(e).__name__}: {e}")
                store.set_run_status(run_id, "failed", error=f"{m.name}: {type(e).__name__}: {e}")
                traceback.print_exc()
                raise
            store.finish_member(run_id, m.name, "finished", selected_checkpoint=f"epoch-{selected}")
            # Selected and SWA weights are saved beside; epoch checkpoints were only kept for resuming.
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
            result.trained.append(m.name)
            p.registry.hook.on_member_end(run_id=run_id, member=m.name, status="finished", selected_epoch=selected)
    finally:
        if progress is not None:
            progress.stop()

    post_members(p, store, run_id, result, say)
    status = "failed" if result.failed else "finished"
    error = "; ".join(f"{k}: {v}" for k, v in result.failed.items()) or None
    store.set_run_status(run_id, status, error=error)
    result.status = status
    p.registry.hook.on_run_end(run_id=run_id, status=status, store_path=str(store.path))
    return result


def post_members(p: Plan, store: Store, run_id: str, result: ApplyResult, say) -> None:
    """After every member has trained: the spec's ensemble, from the stored probabilities."""
    from .ensemble import build_ensemble

    spec = p.resolved.spec
    finished = [m["member"] for m in store.members(run_id) if m["status"] == "finished"]
    if len(finished) < 2:
        return
    strategy = spec.ensemble.checkpoint
    if strategy == "swa" and not spec.swa.k:
        say("[ensemble] checkpoint = 'swa' but [swa] k = 0: no SWA checkpoints to ensemble; skipped.")
        return
    ens = build_ensemble(store, run_id, strategy, spec.ensemble.weights)
    weights = ", ".join(f"{m} {w:.3f}" for m, w in zip(ens.members, ens.weights))
    shown = ", ".join(f"{k} {v:.4f}" for k, v in ens.metrics.items() if k.endswith("accuracy"))
    say(f"Ensemble {ens.name} ({ens.method} weights: {weights}): {shown}")
