"""Ensembles from stored probabilities: no model is run again.

An ensemble is the weighted mean of its members' predicted probabilities at one checkpoint each,
chosen by a selection strategy (any registered one, or `selected`: the spec's own [selection]).
Weights are given, equal, or fitted on the validation split. In the store an ensemble is its own
kind of row (`kind = 'ensemble'`): `member` is the ensemble's name (`ensemble` for the spec's own,
one per strategy) and `checkpoint` the strategy it was built from; `ensemble_weights` keeps its weights.

Fitting minimises the validation log-loss of the mixture over the probability simplex. That
objective is convex in the weights (the log of a linear function), so exponentiated-gradient descent
finds its global minimum; Caruana-style greedy selection is a heuristic for non-convex metrics such
as accuracy and overfits small validation splits, which the notebook's were. The equal weights are
kept when the fit does not beat them, so a fitted ensemble is never worse on validation log-loss.
The fit is deterministic: fixed iterations and step rule, float64 throughout, no threads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from runner.core.records import RunRecord, metric_key
from runner.core.selection import SELECTED
from runner.errors import InputError
from runner.posthoc.picks import picks
from runner.store import Store

EPS = 1e-12
SPEC_ENSEMBLE = "ensemble"  # the name of the spec's own ensemble, one per strategy


@dataclass
class SplitProbs:
    idx: np.ndarray  # (n,) example indices, ascending
    probs: np.ndarray  # (members, n, num_labels)
    labels: np.ndarray | None  # (n,) or None for an unlabelled test split


@dataclass
class Ensemble:
    run_id: str
    name: str  # `member` of its rows (kind = 'ensemble')
    strategy: str  # `checkpoint` of its rows: the strategy that chose each member's checkpoint
    method: str  # given | equal | fit
    members: list[str]
    checkpoints: list[str]
    weights: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)  # eval_accuracy, test_log_loss...
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    idx: dict[str, np.ndarray] = field(default_factory=dict)


def member_checkpoints(store: Store, run: RunRecord, strategy: str, registry,
                       members: list[str] | None = None) -> dict[str, str]:
    """member -> checkpoint under `strategy`, for finished members in training order (members the
    strategy cannot choose for, such as `swa` without SWA, are left out)."""
    finished = [m.name for m in run.finished]
    if members:
        unknown = [m for m in members if m not in finished]
        if unknown:
            raise InputError(f"--members: run {run.run_id} has no finished member {unknown[0]!r} "
                             f"(finished: {', '.join(finished) or 'none'})")
        finished = [m for m in finished if m in members]
    if strategy != SELECTED and registry.selection(strategy) is None:
        known = ", ".join([SELECTED] + [s.name for s in registry.selections()])
        raise InputError(f"--checkpoint {strategy!r}: no such selection strategy; one of: {known}")
    chosen = picks(store, run, registry, strategy)  # computed from the stored epochs where not stored: no write
    return {m: chosen[m] for m in finished if chosen.get(m)}


def load_splits(store: Store, run_id: str, dataset_id: str, splits: Sequence[str],
                checkpoints: dict[str, str], cache: dict | None = None) -> dict[str, SplitProbs | None]:
    """Every member's probabilities for each of `splits`, aligned by example index.

    What `cache` (a dict the caller keeps) lacks is read over one connection, every checkpoint in one
    query (`ProbabilityReader.many`); strategies that share a member's checkpoint read it once, and a
    call that finds everything in the cache opens nothing.
    """
    if not checkpoints:
        return {split: None for split in splits}
    cache = {} if cache is None else cache
    preload(store, {run_id: (dataset_id, [(m, c, s) for s in splits for m, c in checkpoints.items()])},
            {run_id: cache})
    return {split: _read_split(run_id, split, checkpoints, cache) for split in splits}


def preload(store: Store, wanted: dict[str, tuple[str, list[tuple[str, str, str]]]], caches: dict[str, dict]) -> None:
    """Read into `caches[run_id]` the (member, checkpoint, split) probabilities and the splits' labels
    each run in `wanted` (run_id -> (dataset_id, keys)) lacks, all over one connection: what `runner
    sweep`'s re-scoring needs of every trial, read once."""
    missing = {}
    for run_id, (dataset_id, keys) in wanted.items():
        cache = caches.setdefault(run_id, {})
        todo = [k for k in dict.fromkeys(keys) if k not in cache]
        splits = [s for s in dict.fromkeys(s for _, _, s in keys) if ("labels", s) not in cache]
        if todo or splits:
            missing[run_id] = (dataset_id, todo, splits)
    if not missing:
        return
    labels: dict[tuple[str, str], tuple] = {}  # (dataset_id, split): the runs of a sweep share their data
    with store.probabilities() as reader:
        for run_id, (dataset_id, todo, splits) in missing.items():
            cache = caches[run_id]
            cache.update(reader.many(run_id, "member", todo))
            for s in splits:
                if (dataset_id, s) not in labels:
                    labels[(dataset_id, s)] = reader.labels(dataset_id, s)
                cache[("labels", s)] = labels[(dataset_id, s)]


def _read_split(run_id: str, split: str, checkpoints: dict[str, str], cache: dict) -> SplitProbs | None:
    read = {m: cache[(m, c, split)] for m, c in checkpoints.items()}
    if sum(len(idx) for idx, _ in read.values()) == 0:
        return None
    per_member = []
    idx0 = None
    for m, (idx, probs) in read.items():
        if idx0 is None:
            idx0 = idx
        elif len(idx) != len(idx0) or not np.array_equal(idx, idx0):
            raise InputError(f"run {run_id}: member {m!r} has predictions for other {split} examples than the rest")
        per_member.append(probs)
    label_idx, label_ids = cache[("labels", split)]
    labels = None
    if label_ids is not None and len(label_idx):
        pos = np.searchsorted(label_idx, idx0)
        labels = label_ids[pos]
    return SplitProbs(idx=idx0, probs=np.stack(per_member), labels=labels)


def mixture(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    # einsum, not tensordot: BLAS's threads made this small product ~10x slower on a busy 2-core machine
    return np.einsum("m,m...->...", np.asarray(weights, dtype=np.float64), probs)


def fit_weights(probs: np.ndarray, labels: np.ndarray, iters: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Simplex weights minimising the mixture's log-loss (exponentiated gradient with backtracking)."""
    m = probs.shape[0]
    q = np.clip(probs[:, np.arange(len(labels)), labels], EPS, None)  # (members, n): p_m(true class)
    q = np.ascontiguousarray(q, dtype=np.float64)  # converted once, not in each of the hundreds of products
    equal = np.full(m, 1.0 / m)

    def mix(w):  # w @ q without BLAS: OpenBLAS's threads make this small product ~10x slower on a busy machine
        return np.einsum("m,mn->n", w, q)

    def nll(w):
        return float(-np.mean(np.log(np.clip(mix(w), EPS, None))))

    w, f = equal.copy(), nll(equal)
    eta = 1.0
    for _ in range(iters):
        grad = -(q / np.clip(mix(w), EPS, None)).mean(axis=1)
        while True:
            w_new = w * np.exp(-eta * (grad - grad.min()))  # shifting by a constant keeps the step the same
            w_new /= w_new.sum()
            f_new = nll(w_new)
            if f_new <= f or eta < 1e-8:
                break
            eta /= 2
        if f - f_new < tol:
            if f_new <= f:
                w, f = w_new, f_new
            break
        w, f = w_new, f_new
        eta *= 1.5
    return w if f <= nll(equal) else equal


def resolve_weights(weights, names: list[str], valid: SplitProbs | None, run_id: str) -> tuple[np.ndarray, str]:
    """(normalised weights, method) from a list, "equal" or "fit"."""
    if isinstance(weights, (list, tuple)):
        if len(weights) != len(names):
            raise InputError(f"--weights: {len(weights)} weights for {len(names)} members ({', '.join(names)})")
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise InputError("--weights: weights must be finite, non-negative and not all zero")
        return w / w.sum(), "given"
    if weights == "fit":
        if valid is None or valid.labels is None:
            raise InputError(f"run {run_id}: fitting weights needs validation predictions with labels")
        return fit_weights(valid.probs, valid.labels), "fit"
    if weights == "equal":
        return np.full(len(names), 1.0 / len(names)), "equal"
    raise InputError(f"--weights: give 'equal', 'fit' or numbers such as 0.5,0.3,0.2, not {weights!r}")


def build_ensemble(store: Store, run: RunRecord, registry, strategy: str = SELECTED,
                   weights: str | list[float] = "equal", members: list[str] | None = None,
                   name: str | None = None, save: bool = True, memo: dict | None = None,
                   checkpoints: dict[str, str] | None = None) -> Ensemble:
    """Build (and by default store) an ensemble of a run's members from their stored probabilities.

    `memo` (a dict the caller keeps) lets several calls share work: a member checkpoint is read once,
    and strategies that pick the same checkpoint of every member give the same ensemble, so `compare`
    computes it once per distinct set of checkpoints and only stores it under each strategy's name.
    With `save=False` the caller stores it (`Store.log_ensembles`, several in one transaction).
    `checkpoints` (member -> checkpoint) skips looking them up when the caller has them.
    """
    if strategy == SELECTED:
        strategy = run.selected_strategy
    if checkpoints is None:  # `compare` passes the ones it already has
        checkpoints = member_checkpoints(store, run, strategy, registry, members)
    if not checkpoints:
        raise InputError(f"run {run.run_id}: no finished member has a {strategy!r} checkpoint")
    names = list(checkpoints)
    key = (tuple(checkpoints.items()), json.dumps(weights))
    if memo is not None and key in memo:
        w, method, probs, idx, values = memo[key]
    else:
        loaded = load_splits(store, run.run_id, run.dataset_id, ("valid", "test"), checkpoints,
                             memo.setdefault("probabilities", {}) if memo is not None else None)
        w, method = resolve_weights(weights, names, loaded["valid"], run.run_id)
        probs, idx, values = {}, {}, {}
        for split in ("valid", "test"):
            sp = loaded[split]
            if sp is None:
                continue
            p = mixture(sp.probs, w).astype(np.float32)
            p /= p.sum(axis=1, keepdims=True)
            probs[split], idx[split] = p, sp.idx
            if sp.labels is not None:
                for metric, fn in registry.metric_fns().items():
                    values[(split, metric)] = float(fn(p, sp.labels))
        if memo is not None:
            memo[key] = (w, method, probs, idx, values)
    spec_weights = run.ensemble_weights
    default = members is None and (list(weights) == spec_weights if isinstance(spec_weights, list)
                                   else method == spec_weights)
    if name is None:
        name = SPEC_ENSEMBLE if default else _ensemble_name(method, w, names, members)
    ens = Ensemble(run.run_id, name, strategy, method, names, [checkpoints[m] for m in names], w,
                   metrics={metric_key(split, metric): v for (split, metric), v in values.items()},
                   probs=dict(probs), idx=dict(idx))
    if save:
        store.log_ensembles([ens])
    return ens


def _ensemble_name(method: str, w: np.ndarray, names: list[str], members: list[str] | None) -> str:
    label = method if method != "given" else "w=" + ",".join(f"{x:.3g}" for x in w)
    if members:
        label += "[" + "+".join(names) + "]"
    return label


def spec_ensembles(store: Store, run: RunRecord, registry, checkpoints: dict[str, dict[str, str]],
                   memo: dict | None = None) -> list[Ensemble]:
    """The spec's ensemble of every strategy in `checkpoints` (strategy -> member -> checkpoint, from
    `strategy_checkpoints`) that the store has none of and that picks a checkpoint of every finished
    member, computed from the stored probabilities and not stored (what `apply` did not build, a read
    command computes for itself); none for a run of one member (it has no ensemble). `memo` (a dict
    the caller keeps) reads each member checkpoint's probabilities once over several calls."""
    finished = [m.name for m in run.finished]
    if len(finished) < 2:
        return []
    have = store.ensemble_strategies(run.run_id, SPEC_ENSEMBLE)
    memo = {} if memo is None else memo
    return [build_ensemble(store, run, registry, s, run.ensemble_weights, name=SPEC_ENSEMBLE, save=False,
                           memo=memo, checkpoints=chosen)
            for s, chosen in checkpoints.items()
            if s not in have and (s != SELECTED or run.selected_strategy not in have) and len(chosen) == len(finished)]
