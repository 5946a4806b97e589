"""The Python entry points: `apply` and `validate` (what `runner apply` and `runner validate` do),
and `load` (an exported folder, for predicting in a script).

`apply` checks everything first, then trains what is not yet done. Everything that can be checked
before the first training step is checked before the first write: the spec and plugin options, the
data, a sweep's search space, each member's loss, training arguments and seed, that each model can
be reached, the dry run (runner.train.dryrun: the real model, Trainer, optimizer and one batch of each
split), the folders the run will write, and that the store can be written. A broken input therefore
never leaves a half-made run behind. Then a spec with `[sweep]` runs its trials (runner.search), any
other its run (runner.run: replicas over seeds and the refit included), with the members trained by
the backend the command line or `[compute]` asks for (runner.scale), and logged to the trackers
`[track]` names (runner.track: checked with the rest before the first write).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from runner import track
from runner.analysis import report
from runner.analysis.compare import compare
from runner.analysis.notebook import StoreView
from runner.core.progress import TrainingProgress
from runner.errors import InputError
from runner.run.apply import apply_run
from runner.run.plan import check_paths, plan, run_id_for
from runner.scale import ddp
from runner.scale.backend import backend_for
from runner.search.plan import check_space
from runner.search.sweep import SweepResult, apply_sweep
from runner.spec.inline import spec_source
from runner.spec.models import Spec
from runner.store import Store
from runner.train import ranks
from runner.train.dryrun import dry_run
from runner.train.job import ApplyResult, Plan
from runner.use.export import load

__all__ = ["Run", "Spec", "apply", "validate", "load", "open", "plan_spec"]


def plan_spec(spec_path: str | Path, plugins_dir: str | Path | None = None, check_models: bool = True,
              overrides: tuple = ()) -> Plan:
    """The checked plan of a spec (runner.run.plan.plan), its sweep's search space included."""
    return plan(spec_path, plugins_dir, check_models=check_models, overrides=overrides,
                check=_sweep_problems(overrides))


def _sweep_problems(overrides: tuple) -> Callable[[Plan], list]:
    def check(p: Plan) -> list:
        return check_space(p, tuple(overrides)) if p.resolved.spec.sweep is not None else []

    return check


def validate(spec_path: str | Path, store_path: str | Path, plugins_dir: str | Path | None = None,
             check_models: bool = True, overrides: tuple = ()) -> Plan:
    """`runner validate`: the plan, the dry run of every member (its report in `Plan.checked`), and the
    store and run folders checked."""
    p = plan_spec(spec_path, plugins_dir, check_models=check_models, overrides=overrides)
    store = Store(store_path)
    store.check_writable()
    track.check(p.spec_path, p.resolved.spec.track, store_path)
    check_paths(store, run_id_for(p, store, None), p.resolved.members)
    if check_models:
        p.checked = dry_run(p.resolved, p.registry, p.data, p.resolved.members)
    return p


@dataclass
class Run(ApplyResult):
    """What `apply` came to (run id, status, failed members, refit, replicas), with the store it is in:
    `view()` reads it as DataFrames (runner.open), `epochs()` and `compare()` directly."""

    store_path: Path = Path("results.duckdb")

    def view(self) -> StoreView:
        return StoreView(self.store_path)

    def epochs(self):
        return self.view().epochs(self.run_id)

    def compare(self):
        return self.view().compare(self.run_id)


def apply(spec_path: str | Path | dict | Spec, store_path: str | Path = "results.duckdb",
          plugins_dir: str | Path | None = None, force: bool = False, progress: Any = None,
          say: Callable[[str], None] = print, verbose: bool = False, overrides: tuple = (), workers: int = 1,
          worker_argv: list[str] | None = None, backend: str | None = None,
          address: str | None = None, *, set: dict | None = None, store: str | Path | None = None) -> Run | SweepResult:
    """Train every member of the spec that the store does not yet hold as finished; then, with
    `[refit] strategy`, the run's refit on train+valid (runner.run.refit). The spec: a file's path, a
    dict of its tables or a `runner.Spec` (checked alike; problems name key paths). `set` (or
    `overrides`, `--set` pairs): {"train.epochs": 3, ...}; `store`: the store's path (as `store_path`);
    `backend`/`address`: `--backend`/`--address` (else `[compute]`; runner.scale.backend)."""
    spec_path = spec_source(spec_path)
    store_path = Path(store if store is not None else store_path)
    overrides = (*overrides, *(set or {}).items())
    if progress is None and Console().is_jupyter:  # a notebook: the bars render in the cell's output
        progress = TrainingProgress(Console())
    if ranks.distributed():  # under torchrun / accelerate launch: rank 0 leads, the others follow it
        ranks.init()
        if ranks.following():
            ddp.follow()
            return ApplyResult(None, "follower")
    try:
        result = _checked_apply(spec_path, store_path, plugins_dir, force, progress, say, verbose, overrides, workers,
                                worker_argv, backend, address)
    finally:
        ranks.finish()
    if isinstance(result, ApplyResult):
        return Run(**{f.name: getattr(result, f.name) for f in fields(ApplyResult)}, store_path=store_path)
    return result


def _checked_apply(spec_path, store_path, plugins_dir, force, progress, say, verbose, overrides, workers,
                   worker_argv, backend, address) -> ApplyResult | SweepResult:
    p = plan_spec(spec_path, plugins_dir, overrides=overrides)
    store = Store(store_path)
    store.check_writable()
    if ranks.distributed() and (workers > 1 or (backend or p.resolved.spec.compute.backend) == "ray"):
        raise InputError(f"{'--workers' if workers > 1 else '--backend ray'}: under torchrun every process trains "
                         "the same member (DDP); Ray and --workers place whole members or trials, so use one or the "
                         "other ([compute] gpus_per_member > 1 runs torchrun inside each Ray task)")
    if workers > 1 and p.resolved.spec.sweep is None:
        raise InputError(f"--workers {workers}: runs the trials of a sweep at once, and {spec_path} has no [sweep]")
    settings = p.resolved.spec.track
    track.check(p.spec_path, settings, store_path)
    chosen = backend_for(p, backend, address)
    tracking = None
    try:
        if p.resolved.spec.sweep is not None:
            if settings.to:
                say("[track]: a sweep's trials are not logged to trackers; `runner apply` of a trial's spec logs it.")
            return apply_sweep(p, store, progress, say, verbose, overrides, workers, worker_argv, chosen)
        if settings.to:
            tracking = track.Tracking(settings, store_path, p.resolved.name, say)
        result = apply_run(p, store, force, progress, say, verbose, backend=chosen, tracking=tracking)
        if tracking is not None:
            track_results(tracking, store, p.registry, [result, *result.replicas])
        return result
    finally:
        chosen.close()
        if tracking is not None:
            tracking.close()


def track_results(tracking: track.Tracking, store: Store, registry, results: list[ApplyResult]) -> None:
    """After apply: each run's parent tracker run gets `runner compare`'s table as metrics, the table and
    `runner report`'s page as artifacts (a run that finished before [track] was added: its epochs too)."""
    for r in results:
        if r.run_id is None:
            continue
        if r.status == "up-to-date" and tracking.logged(store, r.run_id):
            continue  # logged when it trained (a re-run adds nothing)
        tracked = tracking.run(store, r.run_id)
        if r.status == "up-to-date":
            tracked.backfill()
        status = store.run(r.run_id).status
        if status == "finished":
            tracked.results(partial(posthoc_results, store, r.run_id, registry))
        tracked.end(status)


def posthoc_results(store: Store, run_id: str, registry) -> tuple[dict[str, float], list[Path]]:
    """(metrics, files) of a finished run for its parent tracker run, from what `runner compare` and
    `runner report` show (nothing recomputed here, nothing written to the store)."""
    record = store.run(run_id)
    comparison = compare(store, record, registry)  # every registered strategy, as `compare --format csv`
    metrics = track.table_metrics(comparison.records(), store.ensemble_weights(run_id), comparison.calibrations)
    folder = track.results_dir(store.path, run_id)
    table = folder / "compare.csv"
    track.write_csv(table, comparison.records())
    page = folder / "report.html"
    page.write_text(report.build(store, "run", record, registry), encoding="utf-8")
    return metrics, [table, page]


def open(store: str | Path = "results.duckdb", frames: str = "pandas", plugins: str | Path | None = None) -> StoreView:
    """A store read from a notebook: `.runs()`, `.compare(run)`, `.epochs(run)`, `.predictions(run, member=,
    split=, checkpoint=)`, `.probabilities(...)` (numpy) and `.confusion(...)` as pandas (or, with
    `frames="polars"`, polars) DataFrames, read through DuckDB's Arrow path. It never changes the store."""
    return StoreView(store, frames, plugins)
