"""What `runner sweep` shows of a stored sweep: its trials, the best params, parameter importances,
and the re-scoring table (which trial each selection strategy would pick, from stored predictions).

Everything comes from the store (`sweeps`, `trials`, the trials' runs) except the importances, which
are Optuna's own evaluator run on the sweep's study (its storage is named in `sweeps.storage`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from rich.console import Group

from runner.analysis.stats import paired_bootstrap, spread
from runner.analysis.tables import table as new_table
from runner.core.maths import correct
from runner.errors import InputError
from runner.posthoc.ensemble import SPEC_ENSEMBLE, build_ensemble, preload
from runner.posthoc.picks import all_picks


@dataclass
class SweepView:
    sweep: dict  # the `sweeps` row
    trials: list[dict]  # `trials` rows, best first (finished), then pruned, failed, running
    importances: dict[str, float] = field(default_factory=dict)
    rescoring: list[dict] = field(default_factory=list)  # strategy, trial, eval value, test accuracy
    note: str = ""


def find_sweep(store, ref: str | None) -> dict:
    """A sweep by id, or by name (its latest); the latest sweep when `ref` is None."""
    rows = store.sweeps()
    if not rows:
        raise InputError(f"--store {store.path}: holds no sweep (a spec with [sweep] makes one with runner apply)")
    if ref is None:
        return rows[0]
    for r in rows:
        if ref in (r["sweep_id"], r["name"]):
            return r
    raise InputError(f"SWEEP {ref!r}: no sweep with that id or name in {store.path} (sweeps: "
                     f"{', '.join(r['sweep_id'] for r in rows[:10])})")


def best_run(store, ref: str) -> str | None:
    """The run of the best finished trial of sweep `ref` (id or name), or None when `ref` names no sweep
    or the sweep has no finished trial: what `runner predict`/`export` take for a sweep."""
    try:
        sweep = find_sweep(store, ref)
    except InputError:
        return None
    return store.best_trial_run(sweep["sweep_id"], sweep["direction"] == "maximize")


def load_view(store, ref: str | None, registry) -> SweepView:
    sweep = find_sweep(store, ref)
    greater = sweep["direction"] == "maximize"
    trials = store.trials(sweep["sweep_id"])
    order = {"finished": 0, "pruned": 1, "running": 2, "failed": 3}

    def key(t):
        v = t["value"] if t["value"] is not None else math.nan
        return (order.get(t["status"], 4), -v if greater and not math.isnan(v) else (v if not math.isnan(v) else 0),
                t["number"])

    trials.sort(key=key)
    view = SweepView(sweep, trials)
    view.importances, view.note = importances(sweep)
    view.rescoring = rescoring(store, sweep, [t for t in trials if t["status"] == "finished" and t["run_id"]],
                               registry)
    return view


def importances(sweep: dict) -> tuple[dict[str, float], str]:
    """Optuna's parameter importances of the sweep's study ({} and why, when they cannot be had)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = sweep["storage"]
    try:
        if "://" not in storage:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            storage = JournalStorage(JournalFileBackend(storage))
        study = optuna.load_study(study_name=sweep["sweep_id"], storage=storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "importances will be equal" on a small sweep: the table says it
            return dict(optuna.importance.get_param_importances(study)), ""
    except Exception as e:  # too few finished trials, a storage moved away: the rest still shows
        return {}, f"parameter importances: not available ({type(e).__name__}: {e})"


def rescoring(store, sweep: dict, finished: list[dict], registry) -> list[dict]:
    """For each registered strategy: the trial whose ensemble (or member) under that strategy has the
    best validation value of the strategy's metric (the mean over the trial's seeds with `repeats`),
    that trial's test accuracy (mean and spread over its seeds), and a paired bootstrap interval
    (runner.analysis.stats) for its test accuracy minus that of the trial the sweep's objective picks, over the
    test examples and the seeds."""
    import numpy as np

    # every trial's runs, picks and probabilities read in a few queries, not a few per trial
    of = store.replicas_of([t["run_id"] for t in finished])
    replicas = {t["number"]: of[t["run_id"]] for t in finished}
    runs = store.runs_by_id([rid for ids in replicas.values() for rid in ids])
    stored = store.selections_of(list(runs))
    memos: dict[str, dict] = {}  # per run: each member checkpoint's probabilities read once
    histories = store.member_histories(list(runs))
    chosen = {rid: all_picks(store, run, registry, stored[rid], histories[rid]) for rid, run in runs.items()}

    def checkpoints(run, strategy: str) -> dict[str, str]:
        picked = chosen[run.run_id].get(strategy, {})
        return {m.name: picked[m.name] for m in run.finished if picked.get(m.name)}

    # every checkpoint any strategy picks in any trial, read in one pass over one connection
    preload(store, {rid: (run.dataset_id, [(m, c, split) for comp in registry.selections()
                                           for m, c in checkpoints(run, comp.name).items()
                                           for split in ("valid", "test")]) for rid, run in runs.items()},
            {rid: memos.setdefault(rid, {}).setdefault("probabilities", {}) for rid in runs})

    def correct_on_test(run, ens) -> np.ndarray | None:
        """Per-example correctness of an ensemble on test, or None when an example has no label."""
        label_idx, label_ids = memos[run.run_id]["probabilities"][("labels", "test")]
        idx = ens.idx["test"]
        pos = np.searchsorted(label_idx, idx)
        if label_ids is None or np.any(pos >= len(label_idx)) or not np.array_equal(label_idx[pos], idx):
            return None
        return correct(ens.probs["test"], label_ids[pos])

    def scored(comp, metric: str, number: int):
        """(mean eval value, test accuracy Spread, per-example correctness (replicas, n) or None)."""
        values, accs, rows = [], [], []
        for rid in replicas[number]:
            run = runs[rid]
            try:
                ens = build_ensemble(store, run, registry, comp.name, run.ensemble_weights, name=SPEC_ENSEMBLE,
                                     save=False, memo=memos.setdefault(rid, {}),
                                     checkpoints=checkpoints(run, comp.name))
            except InputError:  # no member has a checkpoint under it (swa without SWA)
                return None
            values.append(ens.metrics.get(f"eval_{metric}"))
            accs.append(ens.metrics.get("test_accuracy"))
            if "test" in ens.probs:
                rows.append(correct_on_test(run, ens))
        value = spread(values)
        if value.mean is None:
            return None
        ok = rows and all(r is not None for r in rows) and len({len(r) for r in rows}) == 1
        return value.mean, spread(accs), (np.stack(rows) if ok else None)

    out = []
    for comp in registry.selections():
        metric = (comp.metric or "eval_accuracy").removeprefix("eval_")
        metric = "log_loss" if metric == "loss" else metric  # an ensemble has no training loss: its NLL
        greater = comp.greater_is_better if comp.metric else True
        found = [(s, t["number"]) for t in finished if (s := scored(comp, metric, t["number"])) is not None]
        if not found:
            continue
        (value, test, rows), number = (max if greater else min)(found, key=lambda x: (x[0][0], -x[1]))
        out.append({"strategy": comp.name, "trial": number, "metric": f"eval_{metric}", "value": value,
                    "test_accuracy": test.mean, "test_accuracy_sd": test.sd, "seeds": test.n,
                    "objective": comp.name == sweep["objective"], "_rows": rows})
    objective = next((r for r in out if r["objective"]), None)
    base = objective["_rows"] if objective is not None else None
    for r in out:
        rows = r.pop("_rows")
        r["delta"] = None
        if r is not objective and rows is not None and base is not None and rows.shape == base.shape:
            r["delta"] = paired_bootstrap(rows, base)
    return out


def render(view: SweepView) -> Group:
    sw = view.sweep
    params = list(dict.fromkeys(k for t in view.trials for k in t["params"]))
    table = new_table(f"Sweep {sw['sweep_id']}: objective {sw['objective']} "
                      f"({sw['direction']}, {'member ' + sw['objective_member'] if sw['objective_member'] else 'ensemble'})",
                      caption="best first; value: the objective on the validation split")
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("status", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True)
    for col in params:  # a long dotted key breaks at its dots: `members.a.train.learning_rate`
        table.add_column(_wrap_key(col), justify="right", no_wrap=True)
    table.add_column("run", overflow="fold")
    for i, t in enumerate(view.trials):
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        if t.get("value_sd") is not None:  # `repeats`: the mean over the trial's seeds, and their spread
            value += f"\n± {t['value_sd']:.4f} ({t['repeats']} seeds)"
        cells = [str(t["number"]), t["status"], value]
        cells += [_fmt(t["params"].get(k)) for k in params] + [t["run_id"] or ""]
        table.add_row(*cells, style="bold green" if i == 0 and t["status"] == "finished" else None)
    parts: list = [table]
    best = next((t for t in view.trials if t["status"] == "finished"), None)
    if best is not None:
        parts.append(f"best: trial {best['number']} ({best['value']:.4f}): "
                     + ", ".join(f"{k} = {_fmt(v)}" for k, v in best["params"].items())
                     + f"; run {best['run_id']} (runner predict/export/compare take it)")
    if view.importances:
        imp = new_table("Parameter importances (Optuna)")
        imp.add_column("param", overflow="fold")
        imp.add_column("importance", justify="right", no_wrap=True)
        for k, v in view.importances.items():
            imp.add_row(k, f"{v:.3f}")
        parts.append(imp)
    elif view.note:
        parts.append(view.note)
    if view.rescoring:
        rs = new_table("Re-scoring: the trial each selection strategy would pick (stored predictions only)",
                       caption="each trial's ensemble under the strategy, compared on the strategy's validation metric "
                               "(the mean over its seeds with repeats); Δ: its test accuracy minus the objective's pick's, "
                               "with a 95% paired bootstrap interval over test examples and seeds (runner.analysis.stats)")
        rs.add_column("strategy", overflow="fold")
        rs.add_column("picks\ntrial", justify="right", no_wrap=True)
        rs.add_column("by", overflow="fold")
        for col in ("value", "its test\naccuracy", "Δ vs objective's pick\n[95% interval]"):
            rs.add_column(col, justify="right", no_wrap=True)
        for r in view.rescoring:
            test = "" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
            if r.get("test_accuracy_sd") is not None:
                test += f" ± {r['test_accuracy_sd']:.4f}"
            d = r.get("delta")
            delta = "" if d is None else f"{d.estimate:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
            rs.add_row(r["strategy"] + (" (objective)" if r["objective"] else ""), str(r["trial"]), r["metric"],
                       f"{r['value']:.4f}", test, delta)
        parts.append(rs)
    return Group(*parts)


def _wrap_key(key: str, width: int = 14) -> str:
    """A dotted key on lines of at most `width` characters where its dots allow (`train.` / `learning_rate`)."""
    lines: list[str] = []
    for part in key.replace(".", ".\n").splitlines():
        if lines and len(lines[-1]) + len(part) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)
