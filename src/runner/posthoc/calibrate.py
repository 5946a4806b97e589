"""`runner calibrate`: a run's stored checkpoints calibrated on valid (runner.posthoc.calibration), stored, shown.

What is calibrated, for a strategy S (default: the run's selected strategy; `selected` also works):
each finished member's checkpoint under S (`kind = 'member'`, `checkpoint` = `epoch-N` or `swa`),
each member's SWA checkpoint when it has one, and the spec's ensemble over S (`kind = 'ensemble'`,
`member = 'ensemble'`, `checkpoint` = S), built from the stored probabilities first when a run of two
or more members lacks it. No model is run.

What is stored, per (run_id, kind, member, checkpoint, method), replaced when calibrate runs again:

- a `calibrations` row: `temperature`, `bias` (NULL for `temperature`; one value per label id,
  summing to 0), `valid_log_loss_before` / `valid_log_loss_after`;
- `metrics` rows with the same run_id / kind / member / checkpoint, `epoch` NULL, split `valid` and
  `test`, named `<metric>@<method>` for the calibrated probabilities and `<metric>@none` for the
  stored ones: `log_loss`, `accuracy`, `f1_macro`, `ece` (15 bins) and `tvd` (total variation
  distance of predicted and true class shares) on splits with labels, and `share_<i>` (the share of
  examples predicted as label id i, an index into `runs.label_names`) on every split.

A name with `@` is never a column of the `epochs` view (it takes identifiers only) and `epoch` NULL
keeps these rows out of every epoch's record, so `epochs`, the strategies and `runner compare` of an
uncalibrated run are unchanged. Rewriting a checkpoint's predictions (an ensemble built again)
deletes its calibrations, which no longer fit it. In SQL, before and after side by side:

    SELECT member, checkpoint, split, split_part(name, '@', 1) AS metric,
           split_part(name, '@', 2) AS method, value
    FROM metrics WHERE run_id = 'RUN' AND name LIKE '%@%' ORDER BY ALL
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runner.core.maths import accuracy, f1_macro, log_loss
from runner.core.records import RunRecord, metric_key, split_key
from runner.core.selection import SELECTED
from runner.errors import InputError
from runner.posthoc import calibration
from runner.posthoc.ensemble import SPEC_ENSEMBLE, build_ensemble
from runner.posthoc.picks import picks
from runner.store import Store

NONE = "none"  # the method name of the stored probabilities, as they are
SPLITS = ("valid", "test")


@dataclass(frozen=True)
class Target:
    kind: str  # member | ensemble
    member: str
    checkpoint: str


@dataclass
class Plan:
    """What `calibrate` will do, decided from reads alone (every bad input is found here)."""

    run: RunRecord
    strategy: str  # the strategy as asked (`selected` or a registered one)
    checkpoints: dict[str, str]  # member -> its checkpoint under the strategy
    targets: list[Target]
    build_ensemble: bool  # the spec's ensemble over the strategy is missing and will be built first


@dataclass
class Calibrated:
    """One stored calibration: `metrics` maps `eval_log_loss@none`, `test_ece@temperature`... to values."""

    run_id: str
    kind: str
    member: str
    checkpoint: str
    method: str
    temperature: float
    bias: list[float] | None
    valid_log_loss_before: float
    valid_log_loss_after: float
    metrics: dict[str, float] = field(default_factory=dict)

    def metric_rows(self) -> list[tuple[str, str, float]]:
        """The store's long rows `(split, name, value)`."""
        return [(*split_key(k), v) for k, v in self.metrics.items()]

    def get(self, split: str, metric: str, method: str | None = None) -> float | None:
        return self.metrics.get(f"{metric_key(split, metric)}@{method or self.method}")


def check_method(method: str) -> str:
    if method not in calibration.METHODS:
        raise InputError(f"--method {method!r}: no such calibration method; one of: {', '.join(calibration.METHODS)}")
    return method


def plan(store: Store, ref: str | None, strategy: str | None, registry) -> Plan:
    """Check the run, strategy and stored data (reads only) and say what will be calibrated."""
    run = store.run(ref)
    if run.status != "finished":
        raise InputError(f"RUN {ref or run.run_id!r}: run {run.run_id} is {run.status}, not finished; calibration fits "
                         "on a finished run's stored probabilities (`runner apply SPEC` finishes it)")
    s = strategy or run.selected_strategy
    if s != SELECTED and registry.selection(s) is None:
        known = ", ".join([SELECTED] + [x.name for x in registry.selections()])
        raise InputError(f"--strategy {s!r}: no such selection strategy; one of: {known} (a plugin's strategy needs "
                         "--plugins DIR)")
    hint = " (a refit run trains on its validation split)" if run.is_refit else ""
    total, labelled = store.example_counts(run.dataset_id, "valid")
    if total == 0 or labelled < total:
        raise InputError(f"RUN {ref or run.run_id!r}: the validation split of run {run.run_id} has no labels"
                         f"{hint}; "
                         "calibration is fitted on labelled validation predictions")
    checkpoints = picks(store, run, registry, s)
    if not checkpoints:
        raise InputError(f"--strategy {s!r}: no finished member of run {run.run_id} has a checkpoint under it")
    targets = []
    for m, cp in checkpoints.items():
        targets.append(Target("member", m, cp))
        if cp != "swa" and store.has_checkpoint(run.run_id, m, "swa"):
            targets.append(Target("member", m, "swa"))
    ens = run.selected_strategy if s == SELECTED else s
    have = ens in store.ensemble_strategies(run.run_id, SPEC_ENSEMBLE)
    build = not have and len(run.finished) >= 2 and len(checkpoints) == len(run.finished)
    for t in targets + ([Target("ensemble", SPEC_ENSEMBLE, ens)] if have else []):
        if not store.prediction_count(run.run_id, t.kind, t.member, t.checkpoint, "valid"):
            raise InputError(f"RUN {ref or run.run_id!r}: {t.kind} {t.member!r} has no stored validation predictions "
                             f"for checkpoint {t.checkpoint!r}{hint}; calibration is fitted on them")
    if have or build:
        targets.append(Target("ensemble", SPEC_ENSEMBLE, ens))
    return Plan(run, s, checkpoints, targets, build)


def calibrate(store: Store, p: Plan, method: str, registry) -> list[Calibrated]:
    """Fit `method` on every target of the plan, store the results (one transaction), return them."""
    run = p.run
    if p.build_ensemble:
        build_ensemble(store, run, registry, p.strategy, run.ensemble_weights, name=SPEC_ENSEMBLE,
                       checkpoints=p.checkpoints)
    true = true_shares(store, run)
    results = []
    with store.probabilities() as reader:
        data = {t: {split: _probabilities(reader, run, t, split) for split in SPLITS} for t in p.targets}
    for t, splits in data.items():
        valid_probs, valid_labels = splits["valid"]
        f = calibration.fit(valid_probs, valid_labels, method)
        c = Calibrated(run.run_id, t.kind, t.member, t.checkpoint, method, f.temperature,
                       None if f.bias is None else [float(x) for x in f.bias], f.log_loss_before, f.log_loss_after)
        for split, (probs, labels) in splits.items():
            if probs is None:
                continue
            after = calibration.apply(probs, f.temperature, f.bias)
            for m, values in ((NONE, _metrics(probs, labels, true.get(split))),
                              (method, _metrics(after, labels, true.get(split)))):
                c.metrics.update({f"{metric_key(split, k)}@{m}": v for k, v in values.items()})
        results.append(c)
    store.log_calibrations(results)
    return results


def stored(store: Store, run: RunRecord) -> list[Calibrated]:
    """The run's stored calibrations with their metrics: members in training order (each one's
    checkpoint under a strategy before its SWA checkpoint), then ensembles."""
    run_id = run.run_id
    by_key = {key: {metric_key(split, name): v for (split, name), v in values.items()}
              for key, values in store.calibrated_metrics(run_id).items()}
    out = []
    order = {m.name: i for i, m in enumerate(run.members)}
    rows = store.calibration_rows(run_id)
    rows.sort(key=lambda r: (r["kind"] != "member", order.get(r["member"], len(order)), r["member"],
                             r["checkpoint"] == "swa", r["checkpoint"], r["method"]))
    for r in rows:
        values = by_key.get((r["kind"], r["member"], r["checkpoint"]), {})
        keep = {k: v for k, v in values.items() if k.endswith(("@" + NONE, "@" + r["method"]))}
        out.append(Calibrated(r["run_id"], r["kind"], r["member"], r["checkpoint"], r["method"], r["temperature"],
                              list(r["bias"]) if r["bias"] is not None else None, r["valid_log_loss_before"],
                              r["valid_log_loss_after"], keep))
    return out


def stored_for(store: Store, run: RunRecord, keys) -> list[Calibrated]:
    """The stored calibrations of the (kind, member, checkpoint) `keys` (the rows `runner compare`
    shows), each once; [] for a run never calibrated, so its compare output is unchanged."""
    wanted = set(keys)
    if not wanted or not store.has_calibrations(run.run_id):
        return []
    return [c for c in stored(store, run) if (c.kind, c.member, c.checkpoint) in wanted]


def true_shares(store: Store, run: RunRecord) -> dict[str, np.ndarray]:
    """split -> the share of each label id among its examples, for the splits with labels."""
    out = {}
    for split, counts in store.label_counts(run.dataset_id).items():
        c = np.zeros(run.num_labels)
        c[: len(counts)] = counts
        out[split] = c / max(c.sum(), 1)
    return out


def lookup(store: Store, run_id: str, kind: str, member: str, checkpoint: str,
           method: str | None = None) -> tuple[float, np.ndarray | None] | None:
    """(temperature, bias or None) stored for a checkpoint or ensemble, the latest when `method` is
    None; None when it was never calibrated. `calibration.apply(probs, *found)` calibrates."""
    found = store.calibration(run_id, kind, member, checkpoint, method)
    if found is None:
        return None
    t, b = found
    return t, (np.asarray(b, dtype=np.float64) if b is not None else None)


# -- helpers --------------------------------------------------------------------------------------


def _probabilities(reader, run: RunRecord, t: Target, split: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(probs (n, K), labels (n,) or None when the split has none), in example order; (None, None)
    when nothing was stored for the split."""
    idx, probs, labels = reader.labelled(run.dataset_id, run.run_id, t.kind, t.member, t.checkpoint, split)
    if len(idx) == 0:
        return None, None
    return probs.astype(np.float64), labels


def _metrics(probs: np.ndarray, labels: np.ndarray | None, true: np.ndarray | None) -> dict[str, float]:
    k = probs.shape[1]
    shares = np.bincount(probs.argmax(axis=1), minlength=k) / max(len(probs), 1)
    out = {f"share_{i}": float(s) for i, s in enumerate(shares)}
    if labels is not None:
        out.update(log_loss=log_loss(probs, labels), accuracy=accuracy(probs, labels),
                   f1_macro=f1_macro(probs, labels), ece=calibration.ece(probs, labels))
        if true is not None:
            out["tvd"] = float(0.5 * np.abs(shares - true).sum())
    return out
