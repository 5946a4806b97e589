"""`runner plot`: what its argument names (a run or a sweep), and a run's learning curves and class
distributions as one PNG (matplotlib, no display). A sweep's figure is runner.analysis.sweep_plot.

The run's figure is five panels (loss, accuracy, macro-F1, class shares, and the confusion matrix of
the spec's model), each drawn by its own function, so that `runner report` embeds them one by one (a phone shows each at its width). Every
legend sits outside its axes, right of them, in a constrained layout that makes room: inside, the
class-share legend covered the bars and the curves' legends the last epochs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner.analysis.sweep_view import find_sweep
from runner.core.maths import confusion
from runner.core.records import RunRecord
from runner.errors import InputError
from runner.plugins.registry import load_registry
from runner.posthoc.ensemble import SPEC_ENSEMBLE
from runner.posthoc.picks import picks
from runner.posthoc.results import RunResults
from runner.store import Store
from runner.store.writes import Target, write_file


def target(store: Store, ref: str | None, sweep: bool = False) -> tuple[str, RunRecord | dict, str]:
    """What `runner plot [REF] [--sweep]` draws: ("run", RunRecord, note) or ("sweep", sweeps row, note).

    With `sweep`, REF is a sweep id or name (the latest sweep when None). Without it, no REF is the
    latest run; a REF is a run when a run has that id or name, else a sweep with that id or name (a
    trial's run is named `<sweep name>-t<N>`, so the two rarely meet; when they do, the note says how
    to get the sweep). Neither: InputError naming REF.
    """
    if sweep:
        if ref is not None and not store.sweeps():
            raise InputError(f"SWEEP {ref!r}: {store.path} holds no sweep (a spec with [sweep] makes one with "
                             "runner apply)")
        return "sweep", find_sweep(store, ref), ""
    if ref is None:
        return "run", store.run(None), ""
    run_id, sweep_id = store.find_run_id(ref), store.find_sweep_id(ref)
    if run_id is not None:
        note = (f"{ref!r} names a run and sweep {sweep_id}; this is the run's plot, add --sweep for "
                "the sweep's" if sweep_id is not None else "")
        return "run", store.run(ref), note
    if sweep_id is not None:
        return "sweep", find_sweep(store, sweep_id), ""

    def some(ids: list[str]) -> str:
        return (", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")) or "none"

    raise InputError(f"RUN|SWEEP {ref!r}: no run or sweep with that id or name in {store.path} (runs: "
                     f"{some(store.recent_run_ids())}; sweeps: {some([s['sweep_id'] for s in store.sweeps()])})")


PANELS = ("loss", "accuracy", "f1", "shares", "confusion")


@dataclass
class RunPlot:
    """What a run's figure draws, read from the store once (`load_run`)."""

    run_id: str
    metric: str  # the selection metric (the star on the accuracy panel)
    labels: list[str]
    members: list[dict]  # member, selected_checkpoint
    epochs: list[dict]  # `epochs` view rows
    split: str  # the split of the class shares (test when it has labels)
    bars: list[tuple[str, list[int]]] = field(default_factory=list)  # (name, count per class); "true" first
    confusion: tuple[str, list[list[int]]] | None = None  # (whose, counts: rows true, columns predicted) on `split`
    objective: str = "loss"  # the spec's loss, what the loss panel draws


def load_run(store: Store, run: RunRecord, registry=None) -> RunPlot:
    run_id = run.run_id
    labels = list(run.label_names)
    epochs = store.epoch_rows(run_id)
    members = [{"member": m.name, "selected_checkpoint": m.selected_checkpoint} for m in run.members]
    true = store.split_label_counts(run.dataset_id, "test")
    split = "test" if true else "valid"
    if not true:
        true = store.split_label_counts(run.dataset_id, "valid")
    bars = [("true", [true.get(k, 0) for k in range(len(labels))])]
    wanted = [(m["member"], m["selected_checkpoint"]) for m in members if m["selected_checkpoint"]]
    wanted += [(m["member"] + " swa", "swa") for m in members]
    if store.ensemble_strategies(run_id, "ensemble"):
        wanted.append(("ensemble", run.selected_strategy if run.ensemble_checkpoint == "selected"
                       else run.ensemble_checkpoint))
    for name, ckpt in wanted:
        kind, member = ("ensemble", "ensemble") if name == "ensemble" else ("member", name.removesuffix(" swa"))
        if kind == "ensemble":
            name = f"ensemble ({ckpt})"
        counts = store.predicted_counts(run_id, kind, member, ckpt, split)
        if counts:
            bars.append((name, [counts.get(k, 0) for k in range(len(labels))]))
    return RunPlot(run_id, run.selection_metric, labels, members, epochs, split, bars,
                   spec_confusion(store, run, split, registry), run.loss_name)


def spec_confusion(store: Store, run: RunRecord, split: str, registry=None) -> tuple[str, list[list[int]]] | None:
    """(whose, confusion matrix) on `split` of the spec's model: its ensemble under the spec's
    `[ensemble] checkpoint` (the one the class-share bars show; computed in memory when `apply` did not
    store it), or a lone member's selected checkpoint; None when nothing has labelled predictions there."""
    if registry is None:  # the built-in strategies and metrics, for what is computed here (nothing is drawn of them)
        registry = load_registry(None)
    strategy = run.selected_strategy if run.ensemble_checkpoint == "selected" else run.ensemble_checkpoint
    chosen = picks(store, run, registry, "selected" if strategy == run.selected_strategy else strategy)
    if not chosen:
        return None
    results = RunResults(store, run, registry)
    if len(run.finished) > 1:
        results.add_spec_ensembles({strategy: chosen})
        key, whose = ("ensemble", SPEC_ENSEMBLE, strategy), f"ensemble ({strategy})"
    else:
        member, checkpoint = next(iter(chosen.items()))
        key, whose = ("member", member, checkpoint), f"{member} {checkpoint}"
    idx, probs, labels = results.labelled(key, split)
    if labels is None:
        return None
    return whose, confusion(probs.argmax(axis=1), labels, run.num_labels).tolist()


def _legend_outside(ax) -> None:
    # right of the axes, outside them: inside, a legend covered the last epochs' points and the bars of
    # the last classes; the constrained layout makes room for it
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def _member_rows(data: RunPlot):
    colors = _colors()
    for i, m in enumerate(data.members):
        rows = [e for e in data.epochs if e["member"] == m["member"]]
        if rows:
            yield m, rows, colors[i % len(colors)]


def _colors() -> list[str]:
    import matplotlib.pyplot as plt

    return plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend_outside(ax)


def draw_loss(ax, data: RunPlot) -> None:
    for m, rows, c in _member_rows(data):
        x = [e["epoch"] for e in rows]
        ax.plot(x, [e["train_loss"] for e in rows], ls=":", color=c)
        ax.plot(x, [e["eval_loss"] for e in rows], color=c, marker="o", label=m["member"])
    # the training objective (focal, smoothing and all), not the log-loss compare shows: named as such
    ax.set_title(f"training objective, {data.objective} (solid: valid, dotted: train)")
    _epoch_axis(ax)


def draw_accuracy(ax, data: RunPlot) -> None:
    for m, rows, c in _member_rows(data):
        x = [e["epoch"] for e in rows]
        ax.plot(x, [e["eval_accuracy"] for e in rows], color=c, marker="o", label=f"{m['member']} valid")
        ax.plot(x, [e["test_accuracy"] for e in rows], color=c, ls="--", label=f"{m['member']} test")
        sel = m["selected_checkpoint"]
        if sel and sel.startswith("epoch-"):
            e = next((r for r in rows if r["epoch"] == int(sel.split("-")[1])), None)
            if e is not None:
                ax.plot([e["epoch"]], [e["eval_accuracy"]], marker="*", ms=16, color=c, mec="black", ls="none")
    ax.set_title(f"accuracy (solid: valid, dashed: test)\nstar: selected by {data.metric}")
    _epoch_axis(ax)


def draw_f1(ax, data: RunPlot) -> None:
    for m, rows, c in _member_rows(data):
        ax.plot([e["epoch"] for e in rows], [e["eval_f1_macro"] for e in rows], color=c, marker="o",
                label=m["member"])
    ax.set_title("validation macro-F1")
    _epoch_axis(ax)


def draw_shares(ax, data: RunPlot) -> None:
    width = 0.8 / len(data.bars)
    for j, (name, counts) in enumerate(data.bars):
        total = sum(counts) or 1
        xs = [k + (j - (len(data.bars) - 1) / 2) * width for k in range(len(data.labels))]
        ax.bar(xs, [c / total for c in counts], width=width, label=name,
               color="black" if name == "true" else None, alpha=0.85)
    ax.set_xticks(range(len(data.labels)), [n.replace("_", "\n") for n in data.labels], fontsize=8)
    ax.set(title=f"predicted class shares on {data.split} vs the true shares", ylabel="share")
    ax.grid(alpha=0.3, axis="y")
    _legend_outside(ax)


def draw_confusion(ax, data: RunPlot) -> None:
    """Rows: the true class, columns: the predicted one; colour: the share of the row (recall on the
    diagonal), each cell's count written in it."""
    import numpy as np

    if data.confusion is None:
        ax.set_axis_off()
        ax.set_title("confusion matrix: no labelled predictions")
        return
    whose, counts = data.confusion
    m = np.asarray(counts, dtype=float)
    share = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    k = len(data.labels)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    names = [n.replace("_", "\n") for n in data.labels]
    ax.set_xticks(range(k), names, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion on {data.split}: {whose}\n(colour: share of the row)")


DRAW = {"loss": draw_loss, "accuracy": draw_accuracy, "f1": draw_f1, "shares": draw_shares,
        "confusion": draw_confusion}


def figure(data: RunPlot, panels: tuple[str, ...] = PANELS, ncols: int = 2, panel_size=(6.5, 4.1)):
    """The figure (not saved): the named panels in a grid of `ncols` columns, each legend outside its axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = plt.figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + (0.4 if len(panels) > 1 else 0)),
                     layout="constrained")
    for i, name in enumerate(panels):
        DRAW[name](fig.add_subplot(nrows, ncols, i + 1), data)
    if len(panels) > 1:
        fig.suptitle(f"run {data.run_id}")
    return fig


def png(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (and closed)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


def plot_run(store: Store, run: RunRecord, out: Target) -> Path:
    """Five panels: loss and accuracy per epoch for every member (valid solid, train/test dashed, the
    selected epoch marked), validation macro-F1, the predicted class shares of each selected member,
    SWA and the ensemble against the true shares on test, and the confusion matrix of the spec's model."""
    return save_figure(figure(load_run(store, run)), out)


# -- the file -----------------------------------------------------------------------------------------

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
MARK = "runner plot"  # in the file's metadata: the only existing images `runner plot` replaces


def save_figure(fig, out: Target) -> Path:
    """Save (and close) the figure through the guarded writer (runner.store.writes), its format from the
    file name and the mark in its metadata."""
    import matplotlib.pyplot as plt

    fmt = out.path.suffix.lower().lstrip(".")
    key = "Software" if fmt == "png" else "Creator"
    try:
        return write_file(out, lambda f: fig.savefig(f, format=fmt, dpi=110, metadata={key: MARK}))
    finally:
        plt.close(fig)


def is_plot(path: Path) -> bool:
    """Whether `path` is an image `runner plot` wrote (the mark is near its start, or its end in a PDF)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            f.seek(max(0, os.fstat(f.fileno()).st_size - (1 << 16)))
            return MARK.encode() in head or MARK.encode() in f.read()
    except OSError:
        return False
