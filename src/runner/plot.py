"""`runner plot`: what its argument names (a run or a sweep), and a run's learning curves and class
distributions as one PNG (matplotlib, no display). A sweep's figure is runner.sweep_plot."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .records import RunRecord
from .store import Store


def target(store: Store, ref: str | None, sweep: bool = False) -> tuple[str, RunRecord | dict, str]:
    """What `runner plot [REF] [--sweep]` draws: ("run", RunRecord, note) or ("sweep", sweeps row, note).

    With `sweep`, REF is a sweep id or name (the latest sweep when None). Without it, no REF is the
    latest run; a REF is a run when a run has that id or name, else a sweep with that id or name (a
    trial's run is named `<sweep name>-t<N>`, so the two rarely meet; when they do, the note says how
    to get the sweep). Neither: InputError naming REF.
    """
    from .sweep_view import find_sweep

    if sweep:
        if ref is not None and not store.query("SELECT 1 FROM sweeps LIMIT 1")[1]:
            raise InputError(f"SWEEP {ref!r}: {store.path} holds no sweep (a spec with [sweep] makes one with "
                             "runner apply)")
        return "sweep", find_sweep(store, ref), ""
    if ref is None:
        return "run", store.run(None), ""
    runs = store.query_dicts("SELECT run_id FROM runs WHERE run_id = ? OR name = ? LIMIT 1", [ref, ref])
    sweeps = store.query_dicts("SELECT sweep_id FROM sweeps WHERE sweep_id = ? OR name = ? "
                               "ORDER BY created_at DESC LIMIT 1", [ref, ref])
    if runs:
        note = (f"{ref!r} names a run and sweep {sweeps[0]['sweep_id']}; this is the run's plot, add --sweep for "
                "the sweep's" if sweeps else "")
        return "run", store.run(ref), note
    if sweeps:
        return "sweep", find_sweep(store, sweeps[0]["sweep_id"]), ""

    def some(sql: str) -> str:
        ids = [r[0] for r in store.query(sql)[1]]
        return (", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")) or "none"

    raise InputError(f"RUN|SWEEP {ref!r}: no run or sweep with that id or name in {store.path} (runs: "
                     f"{some('SELECT run_id FROM runs ORDER BY started_at DESC')}; sweeps: "
                     f"{some('SELECT sweep_id FROM sweeps ORDER BY created_at DESC')})")


def plot_run(store: Store, run: RunRecord, out: Path) -> Path:
    """Four panels: loss and accuracy per epoch for every member (valid solid, train/test dashed, the
    selected epoch marked), and the predicted class shares of each selected member, SWA and the
    ensemble against the true shares on test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    run_id = run.run_id
    labels = list(run.label_names)
    metric = run.selection_metric
    epochs = store.query_dicts("SELECT * FROM epochs WHERE run_id = ? ORDER BY member, epoch", [run_id])
    members = [{"member": m.name, "selected_checkpoint": m.selected_checkpoint} for m in run.members]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (ax_loss, ax_acc), (ax_f1, ax_dist) = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(members):
        rows = [e for e in epochs if e["member"] == m["member"]]
        if not rows:
            continue
        x = [e["epoch"] for e in rows]
        c = colors[i % len(colors)]
        ax_loss.plot(x, [e["train_loss"] for e in rows], ls=":", color=c)
        ax_loss.plot(x, [e["eval_loss"] for e in rows], color=c, marker="o", label=m["member"])
        ax_acc.plot(x, [e["eval_accuracy"] for e in rows], color=c, marker="o", label=f"{m['member']} valid")
        ax_acc.plot(x, [e["test_accuracy"] for e in rows], color=c, ls="--", label=f"{m['member']} test")
        ax_f1.plot(x, [e["eval_f1_macro"] for e in rows], color=c, marker="o", label=m["member"])
        sel = m["selected_checkpoint"]
        if sel and sel.startswith("epoch-"):
            e = next((r for r in rows if r["epoch"] == int(sel.split("-")[1])), None)
            if e is not None:
                ax_acc.plot([e["epoch"]], [e["eval_accuracy"]], marker="*", ms=16, color=c, mec="black")
    ax_loss.set(title="loss (solid: valid, dotted: train)", xlabel="epoch")
    ax_acc.set(title=f"accuracy (solid: valid, dashed: test; star: selected by {metric})", xlabel="epoch")
    ax_f1.set(title="validation macro-F1", xlabel="epoch")
    for ax in (ax_loss, ax_acc, ax_f1):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    true = dict(store.query("SELECT label, count(*) FROM examples WHERE dataset_id = ? AND split = 'test' "
                            "AND label IS NOT NULL GROUP BY label", [run.dataset_id])[1])
    split = "test" if true else "valid"
    if not true:
        true = dict(store.query("SELECT label, count(*) FROM examples WHERE dataset_id = ? AND split = 'valid' "
                                "GROUP BY label", [run.dataset_id])[1])
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
        counts = dict(store.query("SELECT pred, count(*) FROM predictions WHERE run_id = ? AND kind = ? AND member = ? "
                                  "AND checkpoint = ? AND split = ? GROUP BY pred",
                                  [run_id, kind, member, ckpt, split])[1])
        if counts:
            bars.append((name, [counts.get(k, 0) for k in range(len(labels))]))
    width = 0.8 / len(bars)
    for j, (name, counts) in enumerate(bars):
        total = sum(counts) or 1
        xs = [k + (j - (len(bars) - 1) / 2) * width for k in range(len(labels))]
        ax_dist.bar(xs, [c / total for c in counts], width=width, label=name,
                    color="black" if name == "true" else None, alpha=0.85)
    ax_dist.set_xticks(range(len(labels)), [n.replace("_", "\n") for n in labels], fontsize=8)
    ax_dist.set(title=f"predicted class shares on {split} vs the true shares", ylabel="share")
    # below the axes: inside, the legend covered the bars of the last classes
    ax_dist.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    ax_dist.grid(alpha=0.3, axis="y")
    fig.suptitle(f"run {run_id}")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
