"""What each selection strategy picks for a finished run's members, read from the store, never written.

`apply` stores every registered strategy's pick when a member finishes (`selections`). A strategy
registered later (a new plugin, or a built-in added by a newer runner) is computed from the stored
epochs (runner.core.selection.pick_all) each time a command needs it, in memory: a read command
never writes, and the picks are a pure function of the stored epochs.
"""

from __future__ import annotations

from runner.core.records import MemberHistory
from runner.core.selection import SELECTED, pick_all


def _history(store, run, member: str) -> MemberHistory:
    return MemberHistory.of(member, store.member_epochs(run.run_id, member),
                            has_swa=store.has_checkpoint(run.run_id, member, "swa"))


def all_picks(store, run, registry, stored: dict[str, dict[str, str]] | None = None,
              histories: dict | None = None) -> dict[str, dict[str, str]]:
    """strategy -> member -> checkpoint for every registered strategy, from the `selections` table and,
    for strategies it lacks (registered after training, or one that picked nothing), from the stored
    epochs, without writing. `stored` and `histories`: the run's `selections` rows and member
    histories when the caller read them already (`Store.selections_of`, `Store.member_histories`)."""
    stored = store.all_selections(run.run_id) if stored is None else {k: dict(v) for k, v in stored.items()}
    names = [s.name for s in registry.selections()]
    for m in run.finished:
        if all(m.name in stored.get(n, {}) for n in names):
            continue
        history = histories[m.name] if histories is not None and m.name in histories else _history(store, run, m.name)
        for n, c in pick_all(registry, history).items():
            if c is not None:
                stored.setdefault(n, {}).setdefault(m.name, c)
    return stored


def picks(store, run, registry, strategy: str) -> dict[str, str]:
    """member -> checkpoint under `strategy` (`selected`: each member's own), finished members in
    training order, without writing; members it picks nothing for are left out."""
    if strategy == SELECTED:
        return {m.name: m.selected_checkpoint for m in run.finished if m.selected_checkpoint}
    stored = store.selections(run.run_id, strategy)
    out = {}
    for m in run.finished:
        cp = stored.get(m.name)
        if cp is None:
            cp = pick_all(registry, _history(store, run, m.name)).get(strategy)
        if cp:
            out[m.name] = cp
    return out


def strategy_checkpoints(store, run, registry, wanted: list[str]) -> dict[str, dict[str, str]]:
    """strategy -> finished member -> the checkpoint the strategy picks, for each of `wanted`
    (registered strategies), without writing."""
    finished = [m.name for m in run.finished]
    picked = all_picks(store, run, registry)
    return {s: {m: picked[s][m] for m in finished if picked.get(s, {}).get(m)} for s in wanted}
