"""Planning a run: a spec checked as far as it can be without building a model or writing anything.

`plan` parses and resolves the spec (with `--set` overrides), loads and checks its data, plans each
member's adaptation, and checks every member cheaply (loss options, training arguments, seeds, that
each model can be reached: runner.train.dryrun.check_cheaply). What follows is checked before the
first write too: that the store can be written and that every folder the run will write is safe
(`check_paths`). The dry run itself (a real optimizer step of each member) is the caller's next step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from runner.data.prepare import load_raw, prepare
from runner.errors import InputError, SpecError
from runner.plugins.registry import load_registry, plugins_dir_for
from runner.spec import ResolvedMember, load_and_resolve
from runner.store import Store, checkpoints
from runner.train.adapt import plan_adaptations
from runner.train.dryrun import check_cheaply
from runner.train.job import Plan


def plan(spec_path: str | Path, plugins_dir: str | Path | None = None, check_models: bool = True,
         overrides: tuple = (), check: Callable[[Plan], list] | None = None) -> Plan:
    """Parse, resolve and check a spec (with `--set` overrides: (key, value) pairs) and its data,
    without building any model or writing anything. `check(plan)` returns more problems of the spec
    to report before the members are checked (a sweep's search space: runner.search.plan)."""
    spec_path = spec_path if isinstance(spec_path, Path) else Path(spec_path)  # an InlineSpec keeps its document
    registry = load_registry(plugins_dir_for(spec_path, Path(plugins_dir) if plugins_dir is not None else None))
    resolved = load_and_resolve(spec_path, registry, tuple(overrides))
    spec = resolved.spec
    raw = load_raw(spec.data, registry, spec_path, spec.seed, resolved.data_options)
    data = prepare(spec.data, raw, spec.seed)
    p = Plan(spec_path, registry, resolved, data, plan_adaptations(
        resolved, registry, {k: v.texts for k, v in data.splits.items()}, spec.data.text_column))
    if check is not None:
        problems = check(p)
        if problems:
            raise SpecError(spec_path, problems)
    check_cheaply(resolved, registry, data, check_models=check_models)
    return p


def new_run_id(store: Store, name: str, spec_hash: str) -> str:
    base = f"{name}-{spec_hash[:8]}"
    taken = set(store.run_ids()) if store.exists() else set()
    if base not in taken:
        return base
    k = 2
    while f"{base}-{k}" in taken:
        k += 1
    return f"{base}-{k}"


def run_id_for(p: Plan, store: Store, existing: dict | None) -> str:
    return existing["run_id"] if existing is not None else new_run_id(store, p.resolved.name, p.spec_hash)


def check_paths(store: Store, run_id: str, members: list[ResolvedMember]) -> None:
    """Exit 2 when a folder the run would write under runs/ is unsafe or too long for the OS."""
    problems = checkpoints.path_problems(checkpoints.runs_root(store), run_id, [m.name for m in members])
    if problems:
        raise InputError(f"--store {store.path}: " + "; ".join(problems))
