"""`runner compare A B`: two runs on the same test examples, side by side, with B - A and its interval.

The question it answers is "did this change help?" for two runs that differ in one thing (with
`[adapt]` and without, two losses, two learning rates). For each strategy (default: A's own
selection), each model both runs have (the spec's ensemble, or a lone member, and every member of
the same name) gets: test accuracy and log-loss of A and of B, and B's accuracy minus A's with a
paired bootstrap interval (runner.analysis.stats.paired_bootstrap) over test examples, and over seeds when
both runs have replicas (`repeats = N`: replica i of A is paired with replica i of B). The header
names the spec keys in which the runs differ, so a comparison of runs that differ in more than the
change under study is visible as such.

Both runs must have predicted the same test examples (the same data); otherwise there is nothing
to pair, and that is an input error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from rich.text import Text

from runner.analysis.compare_seeds import _mean_sd, model_keys, scores_on_test
from runner.analysis.stats import PairedInterval, paired_bootstrap, spread
from runner.analysis.tables import table as new_table
from runner.core.records import RunRecord
from runner.errors import InputError
from runner.posthoc.picks import strategy_checkpoints
from runner.posthoc.results import RunResults
from runner.store import Store

LEVEL = 0.95


@dataclass
class Row:
    model: str
    strategy: str
    seeds: int
    a: dict  # metric -> Spread over seeds
    b: dict
    interval: PairedInterval | None


@dataclass
class RunsComparison:
    a: str
    b: str
    differ: list[str]  # dotted spec keys whose values differ
    rows: list[Row]

    def records(self) -> list[dict]:
        out = []
        for r in self.rows:
            iv = r.interval
            out.append({
                "model": r.model, "strategy": r.strategy, "seeds": r.seeds,
                "a_test_accuracy": r.a["test_accuracy"].mean, "b_test_accuracy": r.b["test_accuracy"].mean,
                "delta_accuracy": iv.estimate if iv else None, "low": iv.low if iv else None,
                "high": iv.high if iv else None, "p_le_zero": iv.p_le_zero if iv else None,
                "a_test_log_loss": r.a["test_log_loss"].mean, "b_test_log_loss": r.b["test_log_loss"].mean,
            })
        return out

    def render(self) -> list:
        """One block per strategy (its name on a row of its own), a row per model: A's and B's test
        accuracy and log-loss (mean, and ± sd over seeds below it), B - A with its interval below it."""
        title = f"B {self.b} vs A {self.a}: test, B - A"
        table = new_table(title, title_style="bold", caption=(
            f"specs differ in: {', '.join(self.differ[:8])}{' ...' if len(self.differ) > 8 else ''}"
            if self.differ else "the specs are the same"))
        table.add_column("strategy\n  model", overflow="fold")
        for col in ("seeds", "A\naccuracy", "B\naccuracy", f"Δ accuracy\n{LEVEL:.0%} interval", "P(Δ≤0)",
                    "A\nlog loss", "B\nlog loss"):
            table.add_column(col, justify="right", no_wrap=True)
        previous = None
        for r in self.rows:
            if r.strategy != previous:
                if previous is not None:
                    table.add_section()
                table.add_row(Text(r.strategy, style="bold"))
                previous = r.strategy
            iv = r.interval
            interval = f"[{iv.low:+.4f}, {iv.high:+.4f}]" if iv else ""
            clear = iv is not None and (iv.low > 0 or iv.high < 0)
            delta = f"{iv.estimate:+.4f}\n{interval}" if iv else ""
            table.add_row("  " + r.model, str(r.seeds), _lines(r.a["test_accuracy"]), _lines(r.b["test_accuracy"]),
                          Text(delta, style="bold") if clear else delta, f"{iv.p_le_zero:.3f}" if iv else "",
                          _lines(r.a["test_log_loss"]), _lines(r.b["test_log_loss"]))
        return [table]


def _lines(v) -> str:
    """A mean, and its sample sd over seeds on the line below when there is one."""
    return _mean_sd(v).replace(" ± ", "\n± ")


def compare_runs(store: Store, a: RunRecord, b: RunRecord, registry, strategies: list[str] | None = None,
                 ref_b: str = "B") -> RunsComparison:
    if a.run_id == b.run_id:
        raise InputError(f"{ref_b}: names the same run as A ({a.run_id}); give two different runs")
    reps_a = [a if r == a.run_id else store.run(r) for r in store.replicas(a.run_id)]
    reps_b = [b if r == b.run_id else store.run(r) for r in store.replicas(b.run_id)]
    n = min(len(reps_a), len(reps_b))
    reps_a, reps_b = reps_a[:n], reps_b[:n]
    strategies = strategies or [a.selected_strategy]
    res_a = [RunResults(store, r, registry) for r in reps_a]
    res_b = [RunResults(store, r, registry) for r in reps_b]
    rows = []
    for s in strategies:
        for model, keys_a, keys_b in _pairs(store, registry, s, res_a, res_b):
            rows.append(_row(model, s, res_a, res_b, keys_a, keys_b, ref_b))
    # `repeats`, `[refit]` and `[compute]` say what else happens or where, not how a run trains (the spec hash
    # leaves them out too)
    differ = list(dict.fromkeys(re.sub(r"^members\[\d+\]", "members[]", k) for k in spec_differences(a.spec, b.spec)
                                if k.split(".")[0] not in ("repeats", "refit", "compute")))
    return RunsComparison(a.run_id, b.run_id, differ, rows)


def _pairs(store, registry, s: str, res_a: list[RunResults], res_b: list[RunResults]):
    """(model, A's keys per replica, B's keys per replica): the spec's model, then each shared member."""
    top_a = [model_keys(r, [s]).get(s) for r in res_a]
    top_b = [model_keys(r, [s]).get(s) for r in res_b]
    if top_a[0] is not None and top_b[0] is not None:
        yield top_a[0][1], top_a, top_b
    picks_a = _picks(store, registry, s, [r.run for r in res_a])
    picks_b = _picks(store, registry, s, [r.run for r in res_b])
    lone = top_a[0] is not None and top_a[0][0] == "member"
    for m in [m.name for m in res_a[0].run.members]:
        if lone and m == top_a[0][1]:
            continue
        if m in picks_a[0] and m in picks_b[0]:
            yield m, _member_keys(m, picks_a), _member_keys(m, picks_b)


def _picks(store, registry, s: str, reps) -> list[dict[str, str]]:
    """Per replica, member -> the checkpoint strategy `s` picks (`selected`: the run's own selection)."""
    if registry.selection(s) is None:
        return [{m.name: m.selected_checkpoint for m in r.finished} for r in reps]
    return [strategy_checkpoints(store, r, registry, [s]).get(s, {}) for r in reps]


def _member_keys(member: str, picks: list[dict[str, str]]) -> list:
    return [("member", member, p[member]) if p.get(member) else None for p in picks]


def _row(model, s, res_a: list[RunResults], res_b: list[RunResults], keys_a, keys_b, ref_b) -> Row:
    metrics = {}
    for side, res, keys in (("a", res_a, keys_a), ("b", res_b, keys_b)):
        vals = {"test_accuracy": [], "test_log_loss": []}
        for r, key in zip(res, keys):
            got = r.metrics.get(key, {}) if key else {}
            for k in vals:
                vals[k].append(got.get(k))
        metrics[side] = {k: spread(v) for k, v in vals.items()}
    pairs = []
    for ra, rb, ka, kb in zip(res_a, res_b, keys_a, keys_b):
        sa, sb = scores_on_test(ra, ka), scores_on_test(rb, kb)
        if sa is None or sb is None:
            continue
        if not np.array_equal(sa[0], sb[0]) or ra.run.dataset_id != res_a[0].run.dataset_id:
            raise InputError(f"{ref_b}: run {rb.run.run_id} predicted other test examples than run {ra.run.run_id} "
                             "(other data); compare A B pairs the same examples, so both runs need the same data")
        pairs.append((sb[1], sa[1]))
    interval = (paired_bootstrap(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), level=LEVEL)
                if pairs else None)
    return Row(model, s, len(pairs) or len(res_a), metrics["a"], metrics["b"], interval)


def spec_differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two specs (as stored: defaults filled in)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in dict.fromkeys([*a, *b]):
            out += spec_differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(isinstance(x, dict) for x in a + b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += spec_differences(x, y, f"{prefix}[{i}]")
        return out
    return [] if a == b else [prefix or "(spec)"]
