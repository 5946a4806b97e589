"""Ensembles from stored probabilities: no model is run again.

An ensemble is the weighted mean of its members' predicted probabilities at one checkpoint each,
chosen by a strategy (`selected`, `last`, `best_eval_loss`, `best_eval_accuracy`,
`best_eval_f1_macro`, `swa`). Weights are given, equal, or fitted on the validation split.

Fitting minimises the validation log-loss of the mixture over the probability simplex. That
objective is convex in the weights (the log of a linear function), so exponentiated-gradient descent
finds its global minimum; Caruana-style greedy selection is a heuristic for non-convex metrics such
as accuracy and overfits small validation splits, which the notebook's were. The equal weights are
kept when the fit does not beat them, so a fitted ensemble is never worse on validation log-loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

import numpy as np

from .errors import InputError
from .store import Store, arrow_result, now

STRATEGIES = ("last", "best_eval_loss", "best_eval_accuracy", "best_eval_f1_macro", "swa")
EPS = 1e-12


@dataclass
class SplitProbs:
    idx: np.ndarray  # (n,) example indices, ascending
    probs: np.ndarray  # (members, n, num_labels)
    labels: np.ndarray | None  # (n,) or None for an unlabelled test split


@dataclass
class Ensemble:
    run_id: str
    name: str  # the checkpoint name under member = 'ensemble'
    strategy: str
    method: str  # given | equal | fit
    members: list[str]
    checkpoints: list[str]
    weights: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    idx: dict[str, np.ndarray] = field(default_factory=dict)


def run_info(store: Store, run_id: str | None) -> dict:
    """The run (the latest when `run_id` is None), with its spec parsed."""
    if run_id is None:
        rows = store.query_dicts("SELECT * FROM runs ORDER BY started_at DESC LIMIT 1")
        if not rows:
            raise InputError(f"{store.path}: the store has no runs yet")
    else:
        rows = store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            known = ", ".join(store.run_ids()) or "none"
            raise InputError(f"{store.path}: no run {run_id!r} (runs: {known})")
    info = rows[0]
    info["spec"] = json.loads(info["spec"])
    info["label_names"] = json.loads(info["label_names"]) if info.get("label_names") else None
    return info


def member_checkpoints(store: Store, run_id: str, strategy: str, members: list[str] | None = None) -> dict[str, str]:
    """member -> checkpoint for a strategy, for finished members (in training order)."""
    finished = [r["member"] for r in store.query_dicts(
        "SELECT member FROM members WHERE run_id = ? AND status = 'finished' ORDER BY started_at", [run_id])]
    if members:
        unknown = [m for m in members if m not in finished]
        if unknown:
            raise InputError(f"run {run_id}: no finished member {unknown[0]!r} (finished: {', '.join(finished)})")
        finished = [m for m in finished if m in members]
    if strategy == "selected":
        rows = store.query_dicts("SELECT member, selected_checkpoint AS checkpoint FROM members WHERE run_id = ?",
                                 [run_id])
    elif strategy in STRATEGIES:
        rows = store.query_dicts("SELECT member, checkpoint FROM selections WHERE run_id = ? AND strategy = ?",
                                 [run_id, strategy])
    else:
        raise InputError(f"unknown strategy {strategy!r}; one of: selected, {', '.join(STRATEGIES)}")
    chosen = {r["member"]: r["checkpoint"] for r in rows if r["checkpoint"]}
    return {m: chosen[m] for m in finished if m in chosen}


def load_splits(store: Store, run_id: str, dataset_id: str, splits: Sequence[str],
                checkpoints: dict[str, str]) -> dict[str, SplitProbs | None]:
    """Every member's probabilities for each of `splits`, aligned by example index, over one connection.

    One query per member and split: an equality filter on (run_id, member, checkpoint, split) lets
    DuckDB skip every row group of the other checkpoints (zone maps), where a single query with an
    IN list of (member, checkpoint) pairs scans the whole predictions table.
    """
    if not checkpoints:
        return {split: None for split in splits}
    with store.connect(write=False) as con:
        return {split: _read_split(con, run_id, dataset_id, split, checkpoints) for split in splits}


def _read_split(con, run_id: str, dataset_id: str, split: str, checkpoints: dict[str, str]) -> SplitProbs | None:
    tables = {
        m: arrow_result(
            con,
            "SELECT idx, probs FROM predictions WHERE run_id = ? AND member = ? AND checkpoint = ? AND split = ?",
            [run_id, m, checkpoint, split],
        )
        for m, checkpoint in checkpoints.items()
    }
    total = sum(t.num_rows for t in tables.values())
    if total == 0:
        return None
    per_member = []
    idx0 = None
    for m, table in tables.items():
        idx = table.column("idx").to_numpy()
        flat = table.column("probs").combine_chunks().flatten().to_numpy()
        probs = flat.reshape(table.num_rows, -1) if table.num_rows else flat.reshape(0, 0)
        if np.any(idx[1:] <= idx[:-1]):  # rows usually come back in insertion order, already sorted
            order = np.argsort(idx, kind="stable")
            idx, probs = idx[order], probs[order]
        if idx0 is None:
            idx0 = idx
        elif len(idx) != len(idx0) or not np.array_equal(idx, idx0):
            raise InputError(f"run {run_id}: member {m!r} has predictions for other {split} examples than the rest")
        per_member.append(probs)
    labels_tbl = arrow_result(
        con, "SELECT idx, label FROM examples WHERE dataset_id = ? AND split = ? ORDER BY idx", [dataset_id, split]
    )
    label_idx = labels_tbl.column("idx").to_numpy()
    label_col = labels_tbl.column("label")
    labels = None
    if label_col.null_count == 0 and len(label_idx):
        lab = label_col.to_numpy()
        pos = np.searchsorted(label_idx, idx0)
        labels = lab[pos].astype(np.int64)
    return SplitProbs(idx=idx0, probs=np.stack(per_member), labels=labels)


def mixture(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.tensordot(weights, probs, axes=1)


def log_loss(p: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], EPS, None))))


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


def split_metrics(p: np.ndarray, labels: np.ndarray | None, metric_fns: dict, loss_fn) -> dict[str, float]:
    if labels is None:
        return {}
    out = {"loss": loss_fn(p, labels)}
    out.update({name: float(fn(p, labels)) for name, fn in metric_fns.items()})
    return out


def builtin_metric_fns() -> dict:
    from .builtins.metrics import accuracy, f1_macro

    return {"accuracy": accuracy, "f1_macro": f1_macro}


def spec_loss_fn(spec: dict):
    """The run's loss on probabilities, in numpy (no torch import: `runner ensemble` must be quick).

    Losses see logits only through softmax, so for an ensemble, whose logits are log p, the built-in
    cross-entropy and focal losses are computed from p with the same formulas as `runner.losses`.
    A plugin loss, or class weights/alpha from the training split's frequencies, fall back to
    log-loss: the plugin may not be loaded here, and the frequencies are not stored.
    """
    loss = spec.get("loss", {})
    name = loss.get("name", "cross_entropy")
    smoothing = float(loss.get("label_smoothing", 0.0))
    per_class = loss.get("alpha") if name == "focal" else loss.get("class_weights")
    if name not in ("cross_entropy", "focal") or per_class == "inverse_frequency" or (
        name == "cross_entropy" and per_class is not None
    ):
        return log_loss
    gamma = float(loss.get("gamma", 2.0)) if name == "focal" else 0.0

    def fn(p: np.ndarray, labels: np.ndarray) -> float:
        n, k = p.shape
        targets = np.full((n, k), smoothing / k)
        targets[np.arange(n), labels] += 1.0 - smoothing
        weight = (1.0 - p) ** gamma if gamma else np.ones_like(p)
        if per_class is not None:
            weight = weight * np.broadcast_to(np.asarray(per_class, dtype=np.float64), (k,))
        return float(-(targets * weight * np.log(np.clip(p, EPS, None))).sum(axis=1).mean())

    return fn


def build_ensemble(store: Store, run_id: str | None = None, strategy: str = "selected",
                   weights: str | list[float] = "equal", members: list[str] | None = None,
                   name: str | None = None, save: bool = True) -> Ensemble:
    """Build (and by default store) an ensemble of a run's members from their stored probabilities."""
    info = run_info(store, run_id)
    run_id = info["run_id"]
    spec = info["spec"]
    if strategy == "selected":
        metric = spec["selection"]["resolved"]["metric"]
        if metric in ("eval_loss", "eval_accuracy", "eval_f1_macro"):
            strategy_name = f"best_{metric}"
        else:
            strategy_name = "selected"
    else:
        strategy_name = strategy
    checkpoints = member_checkpoints(store, run_id, strategy, members)
    if len(checkpoints) < 1:
        raise InputError(f"run {run_id}: no finished member has a {strategy!r} checkpoint")
    loaded = load_splits(store, run_id, info["dataset_id"], ("valid", "test"), checkpoints)
    valid, test = loaded["valid"], loaded["test"]
    names = list(checkpoints)
    if isinstance(weights, list):
        if len(weights) != len(names):
            raise InputError(f"{len(weights)} weights for {len(names)} members ({', '.join(names)})")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise InputError("weights must be non-negative and not all zero")
        w = w / w.sum()
        method = "given"
    elif weights == "fit":
        if valid is None or valid.labels is None:
            raise InputError(f"run {run_id}: fitting weights needs validation predictions with labels")
        w = fit_weights(valid.probs, valid.labels)
        method = "fit"
    elif weights == "equal":
        w = np.full(len(names), 1.0 / len(names))
        method = "equal"
    else:
        raise InputError(f"weights must be a list, 'equal' or 'fit', not {weights!r}")

    spec_weights = spec.get("ensemble", {}).get("weights", "equal")
    default = members is None and (weights == spec_weights if isinstance(spec_weights, list)
                                   else method == spec_weights)
    if name is None:
        name = strategy_name if default else _ensemble_name(strategy_name, method, w, names, members)
    ens = Ensemble(run_id, name, strategy_name, method, names, [checkpoints[m] for m in names], w)
    metric_fns, loss_fn = builtin_metric_fns(), spec_loss_fn(spec)
    rows = []
    for split, sp in (("valid", valid), ("test", test)):
        if sp is None:
            continue
        p = mixture(sp.probs, w).astype(np.float32)
        p /= p.sum(axis=1, keepdims=True)
        ens.probs[split], ens.idx[split] = p, sp.idx
        for k, v in split_metrics(p, sp.labels, metric_fns, loss_fn).items():
            ens.metrics[f"{split}_{k}"] = v
            rows.append((split, k, v))
    if save:
        store.log_checkpoint(run_id, "ensemble", name, None, rows,
                             [(s, ens.idx[s], ens.probs[s]) for s in ens.probs])
        save_weights(store, ens)
    return ens


def _ensemble_name(strategy: str, method: str, w: np.ndarray, names: list[str], members: list[str] | None) -> str:
    label = method if method != "given" else "w=" + ",".join(f"{x:.3g}" for x in w)
    if members:
        label += "[" + "+".join(names) + "]"
    return f"{strategy}/{label}"


def save_weights(store: Store, ens: Ensemble) -> None:
    created: datetime = now()
    with store.transaction() as con:
        con.execute("DELETE FROM ensemble_weights WHERE run_id = ? AND ensemble = ?", [ens.run_id, ens.name])
        con.executemany(
            "INSERT INTO ensemble_weights VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [[ens.run_id, ens.name, ens.strategy, ens.method, m, c, float(w), created]
             for m, c, w in zip(ens.members, ens.checkpoints, ens.weights)],
        )
