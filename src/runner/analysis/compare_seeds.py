"""`runner compare RUN` for a run with replicas (`repeats = N`, runner.run.repeats): the strategies over seeds.

A replica is an ordinary run of the same spec with other member seeds on the same data split, tied
to the others by `runs.repeat_group` (Store.replicas). For a run whose group holds two or more
replicas, `compare` adds two tables after its own:

- each strategy's model on test, over the replicas: accuracy and log-loss as mean ± sample sd, min
  and max (n = the replicas that have it). The model is the spec's ensemble under the strategy
  (kind `ensemble`, member `ensemble`, checkpoint = the strategy); in a run of one member, which has
  no ensemble, that member at the strategy's checkpoint;
- for each other strategy, the difference of its test accuracy from the run's selected strategy
  (`[selection]`), with a paired bootstrap interval over seeds and test examples together
  (runner.analysis.stats.paired_bootstrap), from the stored test probabilities and the examples' labels.

Ensembles missing from a replica are computed in memory the way `compare` computes them for the run
itself (runner.posthoc.results), never stored. Replicas whose data differ from the run's (another
`dataset_id`) count in the means but not in the intervals, which pair examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.table import Table
from rich.text import Text

from runner.analysis.stats import PairedInterval, Spread, paired_bootstrap, spread
from runner.analysis.tables import table as new_table
from runner.core.maths import correct
from runner.core.records import RunRecord
from runner.posthoc.ensemble import SPEC_ENSEMBLE
from runner.posthoc.picks import strategy_checkpoints
from runner.posthoc.results import RunResults
from runner.store import Store

METRICS = ("test_accuracy", "test_log_loss")


@dataclass
class SeedComparison:
    """What `compare` shows over a run's replicas: `spreads` (strategy -> metric -> Spread) for the
    strategies shown, and `intervals` (strategy -> the interval of its test accuracy minus the
    baseline's, None when no replica has both) for each of them but the baseline."""

    run_id: str
    group: str
    replicas: list[str]  # run ids, by repeat_index
    baseline: str  # the run's selected strategy
    model: str  # what each strategy's numbers are of: "ensemble", or the lone member's name
    spreads: dict[str, dict[str, Spread]]
    intervals: dict[str, PairedInterval | None]

    def records(self) -> list[dict]:
        """Flat rows for CSV/JSON: one `seeds` row per strategy (`test_accuracy` and `test_log_loss`
        are the means over replicas, beside `_sd`, `_min`, `_max`, and `replicas` = n), then one
        `bootstrap` row per strategy compared with `baseline`."""
        out = []
        for s, by in self.spreads.items():
            rec = {"strategy": s, "kind": "seeds", "member": self.model, "checkpoint": s, "epoch": None,
                   "replicas": max(v.n for v in by.values())}
            for metric, v in by.items():
                rec.update({metric: v.mean, f"{metric}_sd": v.sd, f"{metric}_min": v.min, f"{metric}_max": v.max,
                            f"{metric}_n": v.n})
            out.append(rec)
        for s, iv in self.intervals.items():
            out.append({"strategy": s, "kind": "bootstrap", "member": self.model, "checkpoint": s, "epoch": None,
                        "baseline": self.baseline, "replicas": iv.replicas if iv else 0,
                        "examples": iv.examples if iv else None,
                        "test_accuracy_diff": iv.estimate if iv else None,
                        "test_accuracy_diff_low": iv.low if iv else None,
                        "test_accuracy_diff_high": iv.high if iv else None,
                        "p_diff_le_0": iv.p_le_zero if iv else None,
                        "level": iv.level if iv else None, "resamples": iv.resamples if iv else None})
        return out

    def render(self) -> list[Table]:
        """The two rich tables: strategies over seeds, then the intervals of their differences."""
        n = len(self.replicas)
        what = "the spec's ensemble" if self.model == SPEC_ENSEMBLE else f"member {self.model}"
        spread_table = new_table(f"Run {self.run_id}: over {n} seeds (repeat group {self.group}; {what} on test)",
                                 caption="mean ± sample sd over the replicas that have the strategy (n); min and max")
        spread_table.add_column("strategy", overflow="fold")
        for col in ("n", "test accuracy", "min", "max", "test log loss", "min", "max"):
            spread_table.add_column(col.replace(" ", "\n", 1), justify="right", no_wrap=True)
        means = {m: [by[m].mean for by in self.spreads.values() if by[m].mean is not None] for m in METRICS}
        best = {m: (min(v) if m.endswith("loss") else max(v)) for m, v in means.items() if v}
        for s, by in self.spreads.items():
            cells: list = [s, str(max(v.n for v in by.values()))]
            for m in METRICS:
                v = by[m]
                text = _mean_sd(v)
                cells += [Text(text, style="bold green") if v.mean is not None and v.mean == best.get(m) else text,
                          _num(v.min), _num(v.max)]
            spread_table.add_row(*cells, style="bold" if s == self.baseline else None)
        level = next((iv.level for iv in self.intervals.values() if iv), 0.95)
        resamples = next((iv.resamples for iv in self.intervals.values() if iv), 2000)
        diff_table = new_table(f"Run {self.run_id}: test accuracy minus {self.baseline}'s (the run's selection), "
                               f"over {n} seeds",
                               caption=f"paired bootstrap: {resamples} resamples of the seeds and the test examples "
                                   f"together (runner.analysis.stats); P(Δ ≤ 0): the share of resamples where the strategy "
                                   f"is no better")
        diff_table.add_column("strategy", overflow="fold")
        for col in ("seeds", "examples", "Δ\naccuracy", f"{level:.0%}\ninterval", "P(Δ ≤ 0)"):
            diff_table.add_column(col, justify="right", no_wrap=True)
        for s, iv in self.intervals.items():
            if iv is None:
                diff_table.add_row(s, "0", "", "", "", "")
                continue
            above = iv.low > 0 or iv.high < 0  # the interval leaves out 0
            interval = f"[{iv.low:+.4f}, {iv.high:+.4f}]"
            diff_table.add_row(s, str(iv.replicas), str(iv.examples), f"{iv.estimate:+.4f}",
                               Text(interval, style="bold") if above else interval, f"{iv.p_le_zero:.3f}")
        return [spread_table, diff_table]


def over_seeds(store: Store, run: RunRecord, registry, strategies: list[str],
               results: RunResults | None = None) -> SeedComparison | None:
    """The numbers over `run`'s replicas for `strategies` (registered names), or None when the run has
    fewer than two replicas or no replica has test numbers (a test split without labels). `results`:
    the run's own, when the caller has them (compare)."""
    ids = store.replicas(run.run_id)
    if len(ids) < 2:
        return None
    baseline = run.selected_strategy
    wanted = list(dict.fromkeys([*strategies, baseline]))
    replicas = [run if rid == run.run_id else store.run(rid) for rid in ids]
    res = [results if results is not None and rep.run_id == run.run_id else RunResults(store, rep, registry)
           for rep in replicas]
    models = [model_keys(r, wanted) for r in res]  # strategy -> key, each

    values = {m: {s: [] for s in strategies} for m in METRICS}
    for r, keys in zip(res, models):
        for s in strategies:
            got = r.metrics.get(keys.get(s), {})
            for m in METRICS:
                values[m][s].append(got.get(m))
    spreads = {s: {m: spread(values[m][s]) for m in METRICS} for s in strategies}
    if not any(v.n for by in spreads.values() for v in by.values()):
        return None

    intervals = {}
    for s in strategies:
        if s == baseline:
            continue
        pairs = []
        for r, keys in zip(res, models):
            if r.run.dataset_id != run.dataset_id:
                continue  # other examples: nothing to pair with
            a, b = scores_on_test(r, keys.get(s)), scores_on_test(r, keys.get(baseline))
            if a is not None and b is not None and np.array_equal(a[0], b[0]):
                pairs.append((a, b))
        reference = pairs[0][0][0] if pairs else None
        pairs = [(a, b) for a, b in pairs if np.array_equal(a[0], reference)]
        intervals[s] = (paired_bootstrap(np.stack([a[1] for a, _ in pairs]), np.stack([b[1] for _, b in pairs]))
                        if pairs else None)
    model = run.members[0].name if _lone_member(run) and run.members else SPEC_ENSEMBLE
    return SeedComparison(run.run_id, run.repeat_group or "", ids, baseline, model, spreads, intervals)


def model_keys(results: RunResults, wanted: list[str]) -> dict:
    """strategy -> the (kind, member, checkpoint) of the run's model under it: the spec's ensemble
    (computed in memory when the store lacks it), or a lone member's checkpoint; strategies it lacks
    are left out. `selected` (a [selection] direction that no registered strategy has) is the
    members' selected checkpoints."""
    run, registry = results.run, results.registry
    registered = [s for s in wanted if registry.selection(s) is not None]
    picks = strategy_checkpoints(results.store, run, registry, registered)
    for s in wanted:
        if s not in picks:
            picks[s] = {m.name: m.selected_checkpoint for m in run.finished if m.selected_checkpoint}
    finished = [m.name for m in run.finished]
    if _lone_member(run):
        return {s: ("member", finished[0], p[finished[0]]) for s, p in picks.items() if finished and p.get(finished[0])}
    results.add_spec_ensembles(picks)
    return {s: ("ensemble", SPEC_ENSEMBLE, s) for s in wanted}


def _lone_member(run: RunRecord) -> bool:
    """Whether the spec has one member (no ensemble): decided by the spec, not by which members
    finished, so that one replica with a failed member is not compared by a member's numbers."""
    return len(run.spec.get("members") or run.members) == 1


def scores_on_test(results: RunResults, key) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-example correctness on test of a stored or computed model: (idx, 0/1 scores) sorted by idx,
    or None when the model has no test predictions or the test split has no labels."""
    if key is None:
        return None
    idx, probs, labels = results.labelled(key, "test")
    return None if len(idx) == 0 or labels is None else (idx, correct(probs, labels))


def _mean_sd(v: Spread) -> str:
    if v.mean is None:
        return ""
    return f"{v.mean:.4f} ± {v.sd:.4f}" if v.sd is not None else f"{v.mean:.4f}"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"
