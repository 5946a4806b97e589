"""Checkpoint selection: which checkpoint of a member a strategy picks from its epoch history.

Strategies are registered components (hook `register_selections`); the built-ins are `last`, `swa`,
and `best_eval_<metric>` plus `best_eval_<metric>_smoothed` for every registered metric and the
training objective `loss` (runner.builtins.selections). This module holds the pick functions they are
made of, the one used during training to choose the `selected` checkpoint, and `pick_all`, which
applies every registered strategy to a member: the `selections` table, `runner compare`, the
ensembles per strategy and the CLI help all come from that one list.

Ties go to the earliest epoch, as Hugging Face Trainer's best-model tracking does (a later epoch must
be strictly better). Non-finite values are never picked.
"""

from __future__ import annotations

from typing import Callable

from runner.core.records import MemberHistory
from runner.errors import PluginError

SELECTED = "selected"  # the spec's own [selection], whatever strategy it amounts to


def epoch_checkpoint(epoch: int) -> str:
    return f"epoch-{epoch}"


def checkpoint_epoch(checkpoint: str | None) -> int | None:
    """`"epoch-3"` -> 3; None for `swa`, ensembles and None."""
    if checkpoint and checkpoint.startswith("epoch-") and checkpoint[6:].isdigit():
        return int(checkpoint[6:])
    return None


def best_epoch(history: MemberHistory, key: str, greater: bool) -> int | None:
    """The epoch with the best `key` (e.g. `eval_accuracy`), ties to the earliest."""
    best = None
    for epoch, v in history.values(key):
        if best is None or (v > best[1] if greater else v < best[1]):
            best = (epoch, v)
    return None if best is None else best[0]


def best_smoothed_epoch(history: MemberHistory, key: str, greater: bool, window: int = 2) -> int | None:
    """The last epoch of the window of `window` consecutive epochs with the best mean `key`.

    On a small validation split one epoch's accuracy jumps by a few examples; the mean of two
    neighbouring epochs is less noisy, and the later epoch of the best pair is the checkpoint that
    was good for both. With fewer epochs than `window`, the plain best epoch.
    """
    values = history.values(key)
    if len(values) < window:
        return best_epoch(history, key, greater)
    best = None
    for i in range(window - 1, len(values)):
        span = values[i - window + 1: i + 1]
        if span[-1][0] - span[0][0] != window - 1:  # a gap (an epoch without the metric) breaks the window
            continue
        mean = sum(v for _, v in span) / window
        if best is None or (mean > best[1] if greater else mean < best[1]):
            best = (span[-1][0], mean)
    return best_epoch(history, key, greater) if best is None else best[0]


def pick_best(key: str, greater: bool) -> Callable[[MemberHistory], str | None]:
    def pick(history: MemberHistory) -> str | None:
        e = best_epoch(history, key, greater)
        return None if e is None else epoch_checkpoint(e)

    pick.__doc__ = f"the epoch with the {'highest' if greater else 'lowest'} {key}"
    return pick


def pick_best_smoothed(key: str, greater: bool) -> Callable[[MemberHistory], str | None]:
    def pick(history: MemberHistory) -> str | None:
        e = best_smoothed_epoch(history, key, greater)
        return None if e is None else epoch_checkpoint(e)

    pick.__doc__ = f"the later epoch of the 2-epoch window with the {'highest' if greater else 'lowest'} mean {key}"
    return pick


def pick_last(history: MemberHistory) -> str | None:
    return epoch_checkpoint(history.epochs[-1].epoch) if history.epochs else None


def pick_swa(history: MemberHistory) -> str | None:
    return "swa" if history.has_swa else None


def pick_all(registry, history: MemberHistory) -> dict[str, str | None]:
    """strategy name -> the checkpoint it picks for this member (None: it cannot choose)."""
    picks: dict[str, str | None] = {}
    for s in registry.selections():
        try:
            chosen = s.pick(history)
        except Exception as e:  # a plugin strategy's bug: name it, with the member it failed on
            raise PluginError(f"selection strategy {s.name!r} ({s.origin}) raised {type(e).__name__}: {e} "
                              f"for member {history.member!r}") from e
        valid = {epoch_checkpoint(e.epoch) for e in history.epochs} | ({"swa"} if history.has_swa else set())
        if chosen is not None and chosen not in valid:
            raise PluginError(f"selection strategy {s.name!r} ({s.origin}) picked {chosen!r} for member "
                              f"{history.member!r}, which has only {sorted(valid)}")
        picks[s.name] = chosen
    return picks


def strategy_for(registry, metric: str, greater: bool) -> str:
    """The registered strategy that `[selection] metric` amounts to (`best_eval_accuracy`), or
    `selected` when its direction was forced against the strategy's."""
    s = registry.selection(f"best_eval_{metric}")
    if s is not None and (s.greater_is_better is None or s.greater_is_better == greater):
        return s.name
    return SELECTED
