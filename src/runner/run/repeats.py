"""Seeds as an axis: `repeats = N` trains a spec N times, each replica with other member seeds.

On real data one seed moves test accuracy by a point or two, as much as the effects a notebook
compares, so a conclusion drawn from one run is a sample of one. With `repeats = N` (top level, or
`[sweep] repeats` for each trial):

- replica 0 is the run the spec makes without `repeats` (the same spec hash, so an existing run is
  reused); replica k >= 1 is named `<name>-r<k>` and gives every member the seed it would have plus
  1000 * k. The spec's own seed, and with it the data split, stays: every replica sees the same
  examples, which is what makes per-example paired comparisons between replicas possible;
- each replica is an ordinary run; `runs.repeat_group` ties them together and `runs.repeat_index`
  orders them (store.set_repeat), so `runner compare` can report means, spreads and paired bootstrap
  intervals over seeds (runner.analysis.stats), and a sweep's objective is the mean over its trial's replicas.
"""

from __future__ import annotations

from dataclasses import replace

from runner.errors import SpecError
from runner.spec.base import MAX_SEED

SEED_STRIDE = 1000


def count(resolved) -> int:
    """Replicas of a plain spec (a sweep's trials use `[sweep] repeats`, default this)."""
    return int(resolved.spec.repeats)


def replica_plan(p, k: int, name: str | None = None):
    """The Plan of replica k of `p` (k = 0 is `p` itself): member seeds + 1000 k, named <name>-r<k>."""
    if k == 0:
        return p
    resolved = p.resolved
    spec = resolved.spec.model_copy(update={"name": f"{name or resolved.name}-r{k}"})
    members = []
    for m in resolved.members:
        seed = m.seed + SEED_STRIDE * k
        if seed > MAX_SEED:
            raise SpecError(resolved.path, [(f"members[{m.index}].seed",
                                             f"replica {k} of `repeats` would use seed {seed}, above {MAX_SEED}")])
        members.append(replace(m, seed=seed))
    # training, the stored spec and its hash read each member's seed from the resolved members
    return replace(p, resolved=replace(resolved, spec=spec, members=members))


def group_id(p) -> str:
    """The repeat group of a spec: its name and the hash of replica 0."""
    return f"{p.resolved.name}-{p.spec_hash[:8]}"


def apply_all(p, store, force: bool, progress, say, verbose: bool, apply_plan, n: int):
    """Train replicas 0 .. n-1 of `p` (each resumable like any run); the result of replica 0 with the
    others in `.replicas`, failed when any failed."""
    group = group_id(p)
    results = []
    for k in range(n):
        rp = replica_plan(p, k)
        if k:
            say(f"replica {k} of {n - 1}: member seeds + {SEED_STRIDE * k}")
        fresh = progress.fresh() if progress is not None and k else progress
        result = apply_plan(rp, store, force and k == 0, fresh, say, verbose,
                            on_run=lambda run_id, k=k: store.set_repeat(run_id, group, k))
        results.append(result)
    first = results[0]
    first.replicas = results[1:]
    if any(r.status == "failed" for r in results):
        first.status = "failed"
    return first
