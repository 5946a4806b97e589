"""`runner plot SWEEP`: a stored sweep as one PNG (matplotlib, no display).

The top panel is the objective by trial number: finished trials as points, the best trial as a star,
the best-so-far line in the sweep's direction, and pruned and failed trials (which have no objective
value) as marks in a shaded strip along the bottom of the axes, below every value. Below it, one
slice panel per parameter: the objective against the parameter's value, on a log axis when the
values are all positive and span more than two decades, and as categories for a `choices`
parameter (or one whose values are not numbers). Every panel shares the objective's y-range, and the
one legend sits outside the axes, so that it never covers a point.

Everything comes from the store (`sweeps`, `trials`); `load` checks what the figure needs before
anything is drawn or written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.analysis.plot import save_figure
from runner.errors import InputError
from runner.store.writes import Target

DECADES = 2.0  # a positive numeric param whose values span more than this many decades gets a log axis
STRIP = 0.13  # the bottom share of each panel that holds the trials without a value (pruned, failed)
STYLE = {  # status -> how its trials are drawn (label, marker, color)
    "finished": ("finished", "o", "tab:blue"),
    "pruned": ("pruned (no value)", "X", "tab:orange"),
    "failed": ("failed (no value)", "v", "tab:red"),
}


@dataclass
class Param:
    name: str
    categorical: bool
    categories: list[Any] = field(default_factory=list)  # in the space's order, for a categorical param

    def position(self, value) -> float:
        """Where a value goes on the x-axis: the value, or its category's index."""
        if not self.categorical:
            return float(value)
        key = _key(value)
        return float(next(i for i, c in enumerate(self.categories) if _key(c) == key))


@dataclass
class SweepPlot:
    sweep: dict  # the `sweeps` row
    trials: list[dict]  # the `trials` rows by number, params parsed
    params: list[Param]

    @property
    def maximize(self) -> bool:
        return self.sweep["direction"] == "maximize"

    def with_status(self, status: str) -> list[dict]:
        return [t for t in self.trials if t["status"] == status]

    @property
    def finished(self) -> list[dict]:
        return [t for t in self.with_status("finished") if _finite(t["value"])]

    @property
    def best(self) -> dict:
        """The best finished trial in the sweep's direction (the earliest of a tie)."""
        return max(self.finished, key=lambda t: (t["value"] if self.maximize else -t["value"], -t["number"]))

    def objective_label(self) -> str:
        s = self.sweep
        who = f"member {s['objective_member']}" if s.get("objective_member") else "ensemble"
        return f"{s['objective']}\n({who}, valid)"


def load(store, sweep: dict) -> SweepPlot:
    """The sweep's trials and params; InputError (exit 2) when no trial has finished with a value."""
    trials = store.trials(sweep["sweep_id"])
    data = SweepPlot(sweep, trials, [])
    if not data.finished:
        counts = {}
        for t in trials:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        held = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
        raise InputError(f"SWEEP {sweep['sweep_id']!r}: no trial has finished with an objective value yet ({held}); "
                         "nothing to plot. `runner apply SPEC` runs the sweep's trials, or `runner sweep` shows them.")
    data.params = params_of(sweep, trials)
    return data


def params_of(sweep: dict, trials: list[dict]) -> list[Param]:
    """One Param per key of `[sweep.space]` (in the spec's order), then any other key a trial holds.
    A `choices` key is categorical; a key without a distribution is, when any value is not a number."""
    try:
        spec = json.loads(sweep["spec"]) if isinstance(sweep.get("spec"), str) else (sweep.get("spec") or {})
        space = dict((spec.get("sweep") or {}).get("space") or {})
    except (TypeError, ValueError, AttributeError):
        space = {}
    names = list(space) + [k for t in trials for k in t["params"] if k not in space]
    out = []
    for name in dict.fromkeys(names):
        values = [t["params"][name] for t in trials if name in t["params"]]
        if not values:
            continue
        dist = space.get(name) or {}
        choices = dist.get("choices") if isinstance(dist, dict) else None
        if choices is None and all(_is_number(v) for v in values):
            out.append(Param(name, False))
            continue
        categories = list(choices or [])
        for v in values:
            if _key(v) not in {_key(c) for c in categories}:
                categories.append(v)
        out.append(Param(name, True, categories))
    return out


def is_log(values: list[float]) -> bool:
    """A log axis: every value positive and the largest more than DECADES decades above the smallest."""
    values = [float(v) for v in values if _finite(v)]
    return bool(values) and min(values) > 0 and math.log10(max(values) / min(values)) > DECADES


def best_so_far(data: SweepPlot) -> tuple[list[int], list[float]]:
    """The best value among the finished trials up to each finished trial's number, in the sweep's direction."""
    xs, ys, best = [], [], None
    for t in data.finished:
        v = t["value"]
        best = v if best is None else (max(best, v) if data.maximize else min(best, v))
        xs.append(t["number"])
        ys.append(best)
    return xs, ys


def y_limits(data: SweepPlot) -> tuple[float, float, bool]:
    """(low, high, strip): the values' range with a margin, and room below it for the no-value strip."""
    lows = [t["value"] - (t.get("value_sd") or 0) for t in data.finished]
    highs = [t["value"] + (t.get("value_sd") or 0) for t in data.finished]
    lo, hi = min(lows), max(highs)
    if hi == lo:  # every trial scored the same: centre the value
        pad = max(abs(hi) * 0.02, 0.01)
        lo, hi = lo - pad, hi + pad
    span = hi - lo
    strip = any(t["status"] in ("pruned", "failed") and not _finite(t["value"]) for t in data.trials)
    top = hi + 0.12 * span  # room for the best trial's star
    if not strip:
        return lo - 0.08 * span, top, False
    # the lowest value sits at 2 * STRIP of the axes height, the strip's marks at STRIP / 2
    bottom = (lo - 2 * STRIP * top) / (1 - 2 * STRIP)
    return bottom, top, True


def figure(data: SweepPlot):
    """The figure (not saved): the objective by trial on top, one slice panel per param below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = len(data.params)
    ncols = min(3, n) or 1
    nrows = math.ceil(n / ncols)
    fig = plt.figure(figsize=(max(10.0, 4.4 * ncols + 2.4), 3.9 + 3.4 * nrows), layout="constrained")
    grid = fig.add_gridspec(1 + nrows, ncols, height_ratios=[1.15] + [1.0] * nrows)
    ax_obj = fig.add_subplot(grid[0, :])
    ylim = y_limits(data)
    best = data.best

    _points(ax_obj, data, lambda t: float(t["number"]), ylim, errors=True)
    xs, ys = best_so_far(data)
    last = max(t["number"] for t in data.trials)
    if xs and xs[-1] < last:
        xs, ys = xs + [last], ys + [ys[-1]]
    ax_obj.plot(xs, ys, drawstyle="steps-post", color="black", lw=1.3, alpha=0.8,
                label=f"best so far ({data.sweep['direction']})", zorder=2)
    ax_obj.plot([best["number"]], [best["value"]], marker="*", ms=17, color="gold", mec="black", ls="none",
                label=f"best: trial {best['number']} ({best['value']:.4g})", zorder=4)
    ax_obj.set(title=f"objective by trial: {data.sweep['objective']}, {data.sweep['direction']}", xlabel="trial",
               ylabel=data.objective_label())
    ax_obj.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_obj.set_xlim(-0.6, last + 0.6)
    # outside the axes, right of them: inside, it covered the points of the last trials
    ax_obj.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)

    for i, p in enumerate(data.params):
        ax = fig.add_subplot(grid[1 + i // ncols, i % ncols])
        have = [t for t in data.trials if p.name in t["params"]]
        if p.categorical:
            _points(ax, data, lambda t, p=p: p.position(t["params"][p.name]) + _jitter(t["number"]), ylim, have)
            ax.set_xticks(range(len(p.categories)), [_label(c) for c in p.categories], fontsize=8)
            ax.set_xlim(-0.5, len(p.categories) - 0.5)
            ax.set_xlabel("category")
        else:
            _points(ax, data, lambda t, p=p: p.position(t["params"][p.name]), ylim, have)
            log = is_log([t["params"][p.name] for t in have])
            if log:
                ax.set_xscale("log")
            ax.set_xlabel("value (log scale)" if log else "value")
        if best is not None and p.name in best["params"]:
            x = p.position(best["params"][p.name]) + (_jitter(best["number"]) if p.categorical else 0.0)
            ax.plot([x], [best["value"]], marker="*", ms=15, color="gold", mec="black", ls="none", zorder=4)
        ax.set_title(p.name, fontsize=10)
        if i % ncols == 0:
            ax.set_ylabel(data.objective_label())
    s = data.sweep
    counts = ", ".join(f"{len(data.with_status(k))} {k}" for k in ("finished", "pruned", "failed", "running")
                       if data.with_status(k))
    fig.suptitle(f"sweep {s['sweep_id']}: {len(data.trials)} trials ({counts})")
    return fig


def plot_sweep(data: SweepPlot, out: Target) -> Path:
    """Draw the sweep's figure (`load` gives `data`) and save it to the checked target `out`."""
    return save_figure(figure(data), out)


# -- drawing helpers --------------------------------------------------------------------------------


def _points(ax, data: SweepPlot, x_of, ylim: tuple[float, float, bool], trials: list[dict] | None = None,
            errors: bool = False) -> None:
    """Each status's trials: finished ones at their value, pruned and failed ones without a value in
    the strip at the bottom (x in data, y in axes coordinates), on the shared y-range."""
    trials = data.trials if trials is None else trials
    lo, hi, strip = ylim
    ax.set_ylim(lo, hi)
    ax.grid(alpha=0.3)
    if strip:
        ax.axhspan(lo, lo + STRIP * (hi - lo), color="0.92", zorder=0, lw=0)
        ax.set_yticks([y for y in ax.get_yticks() if lo + STRIP * (hi - lo) <= y <= hi])  # the strip has no scale
    for status, (label, marker, color) in STYLE.items():
        rows = [t for t in trials if t["status"] == status]
        valued = [t for t in rows if _finite(t["value"])]
        if valued:
            xs = [x_of(t) for t in valued]
            ys = [t["value"] for t in valued]
            sds = [t.get("value_sd") or 0.0 for t in valued]
            if errors and any(sds):
                ax.errorbar(xs, ys, yerr=sds, ls="none", color=color, alpha=0.5, capsize=2, zorder=2)
            ax.plot(xs, ys, marker=marker, ls="none", color=color, ms=7, alpha=0.85, label=label
                    if status == "finished" else label.replace(" (no value)", ""), zorder=3)
        unvalued = [t for t in rows if not _finite(t["value"])]
        if unvalued and strip:
            y = lo + STRIP / 2 * (hi - lo)
            ax.plot([x_of(t) for t in unvalued], [y] * len(unvalued), marker=marker, ls="none", color=color,
                    ms=8, label=label, zorder=3)


def _jitter(number: int) -> float:
    """A small, fixed sideways offset per trial, so that trials of one category do not hide each other."""
    return ((number * 0.618034) % 1.0 - 0.5) * 0.24


def _key(value) -> str:
    return json.dumps(value, sort_keys=True)


def _label(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)
