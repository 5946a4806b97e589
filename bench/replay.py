"""Does the store keep up at sweep scale? A synthetic replay of a large run and of a sweep through runner's
own store API.

1. The run: a store as `runner apply` would leave it for 10 members x 10 epochs x 50,000 examples x
   2 splits (valid and test) with 4 classes: 10M prediction rows for the epoch checkpoints, plus one
   SWA checkpoint per member (1M rows more, so that all five strategies exist), written through the
   `Store` API (`create_run`, `put_examples`, `start_member`, `log_checkpoint`, `finish_member`);
   nothing is trained. The fake probabilities are Dirichlet samples around the true label: a part
   shared by every member (how hard the example is) mixed with a part of each member's own, with a
   per-member skill that grows over the epochs and a temperature that makes later epochs
   over-confident, so accuracy is about 0.7, members differ, best-by-loss and best-by-accuracy pick
   different epochs, and the ensemble gains a little.
2. The sweep (bench/replay_sweep.py): 100 trials x 3 members x 10 epochs x 10,000 examples x 2 splits,
   60M prediction rows, each trial a run with its `trials` row and an Optuna study beside it; every
   `log_checkpoint` is timed, and beside it DuckDB's own Arrow insert of the same rows into one bare
   table over one open connection (the baseline, in the same invocation).

Figures (each against its target):

- insert rate of the prediction rows: rows / seconds inside `log_checkpoint` (Arrow batch building,
  opening the file, the idempotent delete, the inserts, the commit), for the run and for the sweep,
  and the sweep's as a ratio to the bare insert;
- bytes per prediction row: the sweep store's file size / its prediction rows;
- `compare` (compute + render) of one run, cold (the first call in a fresh process, imports done) and
  warm (the best of the next three), of the 11M-row run and of one trial of the sweep; read commands
  store nothing (the file's checksum is checked unchanged);
- `runner sweep`'s view with the re-scoring table over every trial (load_view + render), cold and warm;
- DataFrame reads: every prediction of one trial as a pandas and a polars DataFrame (`runner.open`)
  and then as one (rows x classes) numpy array (`probs_array`), rows/s;
- the peak RSS of the real `runner sweep` CLI on the sweep store (wait4's ru_maxrss);
- `ensemble --weights fit` over the run's 10 members, in-process and as the CLI;
- SWA peak memory: K=5 safetensors checkpoints of a BERT-base-shaped classifier (transformers'
  `BertConfig()` defaults, 4 labels, about 110M parameters, 440 MB in fp32), averaged by
  `runner.train.swa.average_checkpoints` in a fresh subprocess; the peak RSS above the RSS just before
  the call (VmHWM reset through /proc/self/clear_refs when the kernel allows it, else
  peak - baseline), divided by one model's bytes. A naive average (all K state dicts loaded at
  once) is measured the same way for contrast.

    python bench/replay.py              # full size (several GB of temp files, deleted at the end)
    python bench/replay.py --small      # seconds: a small run and sweep, no SWA (the CI smoke test)
    python bench/replay.py --json       # stdout: only the sweep-scale figures, as one JSON object
    python bench/replay.py --skip-swa   # the store figures only
    python bench/replay.py --trials 10  # a smaller sweep (also --sweep-examples, --sweep-members)
    python bench/replay.py --dir DIR    # put the temp dir under DIR (it is deleted at the end all the same)

Without --json the last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_LABELS = 4
LABEL_NAMES = ["strong_negative", "weak_negative", "weak_positive", "strong_positive"]
CLASS_SHARES = [0.30, 0.10, 0.25, 0.35]  # the notebook's imbalance: weak negative is the minority
TARGETS = {"insert_rows_per_s": 3_000_000, "insert_vs_bare": 0.8, "bytes_per_row": 10.0, "compare_cold_s": 0.5,
           "compare_warm_s": 0.1, "sweep_view_cold_s": 2.0, "dataframe_rows_per_s": 20_000_000,
           "sweep_peak_rss_gb": 2.0, "ensemble_fit_s": 2.0, "swa_peak_ratio": 2.5}
# what --json prints, exactly
JSON_KEYS = ("insert_rows_per_s", "bare_insert_rows_per_s", "bytes_per_row", "compare_cold_s", "compare_warm_s",
             "sweep_view_cold_s", "sweep_view_warm_s", "dataframe_rows_per_s", "sweep_peak_rss_gb")

# --------------------------------------------------------------------------------------------------
# the synthetic run


def fake_spec(members: list[str], epochs: int) -> dict:
    """A resolved spec of the shape `ResolvedSpec.to_dict` writes (what compare/ensemble read)."""
    return {
        "name": "bench-replay",
        "seed": 0,
        "data": {"source": "synthetic", "valid": 0.15, "test": 0.15, "max_length": 64},
        "train": {"epochs": epochs, "batch_size": 32, "learning_rate": 1e-3, "lr_scheduler": "constant"},
        "loss": {"name": "focal", "alpha": 1.0, "gamma": 2.0, "label_smoothing": 0.1},
        "selection": {"metric": "eval_accuracy", "early_stopping_patience": 3,
                      "resolved": {"metric": "eval_accuracy", "greater_is_better": True,
                                   "strategy": "best_eval_accuracy"}},
        "swa": {"k": 2},
        "ensemble": {"checkpoint": "selected", "weights": "fit"},
        "members": [{"name": m, "backbone": "scratch", "model": None, "seed": i, "options": {}}
                    for i, m in enumerate(members)],
    }


def dirichlet_around(rng: np.random.Generator, labels: np.ndarray, boost: float, base: float = 0.7) -> np.ndarray:
    """One Dirichlet sample per example, its concentration raised by `boost` on the true label."""
    alpha = np.full((len(labels), NUM_LABELS), base)
    alpha[np.arange(len(labels)), labels] += boost
    g = rng.standard_gamma(alpha)
    return g / g.sum(axis=1, keepdims=True)


def sharpen(p: np.ndarray, temperature: float) -> np.ndarray:
    q = p ** temperature
    return q / q.sum(axis=1, keepdims=True)


def metric_values(p: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The built-in metrics, and `loss` (a member's training objective: log-loss stands in for it here)."""
    from runner.core.maths import accuracy, f1_macro, log_loss

    nll = log_loss(p, labels)
    return {"loss": nll, "accuracy": accuracy(p, labels), "f1_macro": f1_macro(p, labels), "log_loss": nll}


def build_store(path: Path, n_members: int, n_epochs: int, n_examples: int, seed: int = 0) -> dict:
    """Write the synthetic run; returns its id and the insert timings."""
    from runner.core.records import MemberHistory
    from runner.core.selection import pick_all
    from runner.data.prepare import Split
    from runner.plugins.registry import load_registry
    from runner.store import Store

    rng = np.random.default_rng(seed)
    store = Store(path).open()
    splits_labels = {s: rng.choice(NUM_LABELS, n_examples, p=CLASS_SHARES) for s in ("valid", "test")}
    train_labels = rng.choice(NUM_LABELS, 2 * n_examples, p=CLASS_SHARES)
    splits = {
        "train": Split([f"train review {i}: a film I watched" for i in range(len(train_labels))], train_labels),
        **{s: Split([f"{s} review {i}: a film I watched" for i in range(n_examples)], lab)
           for s, lab in splits_labels.items()},
    }
    dataset_id = f"bench-{n_examples}-{seed}"
    store.put_examples(dataset_id, splits)

    members = [f"m{i:02d}" for i in range(n_members)]
    run_id = f"bench-replay-{int(time.time())}"
    spec = fake_spec(members, n_epochs)
    store.create_run(run_id, "bench-replay", spec, "bench-hash", dataset_id, LABEL_NAMES)
    registry = load_registry(None)
    shared = {s: dirichlet_around(rng, lab, 1.3) for s, lab in splits_labels.items()}  # example difficulty
    idx = np.arange(n_examples, dtype=np.int32)

    timed_s, pred_rows, calls = 0.0, 0, 0
    for mi, member in enumerate(members):
        store.start_member(run_id, member, "scratch", None, mi, {})
        skill = 0.4 + 0.8 * rng.random()
        history: dict[int, float] = {}
        epoch_probs: dict[int, dict[str, np.ndarray]] = {}
        for epoch in range(1, n_epochs + 1):
            boost = skill * (0.6 + 0.4 * (1 - np.exp(-epoch / 2))) + rng.normal(0, 0.05)
            temperature = 0.8 + 0.08 * epoch  # under-confident early, over-confident late
            rows = [("train", "loss", float(1.2 * np.exp(-0.25 * epoch) + rng.normal(0, 0.01)))]
            preds = []
            probs_by_split = {}
            for split, lab in splits_labels.items():
                own = dirichlet_around(rng, lab, boost)
                p = sharpen(0.75 * shared[split] + 0.25 * own, temperature).astype(np.float32)
                probs_by_split[split] = p
                rows += [(split, k, v) for k, v in metric_values(p, lab).items()]
                preds.append((split, idx, p))
            history[epoch] = next(v for s, k, v in rows if s == "valid" and k == "accuracy")
            epoch_probs[epoch] = probs_by_split  # the last two feed the fake SWA checkpoint
            epoch_probs.pop(epoch - 2, None)
            t0 = time.perf_counter()
            store.log_checkpoint(run_id, member, f"epoch-{epoch}", epoch, rows, preds)
            timed_s += time.perf_counter() - t0
            pred_rows += sum(len(p[1]) for p in preds)
            calls += 1
        # SWA over the last two epochs: fake it as the mean of their probabilities
        rows, preds = [], []
        for split, lab in splits_labels.items():
            p = np.mean([epoch_probs[e][split] for e in epoch_probs], axis=0).astype(np.float32)
            rows += [(split, k, v) for k, v in metric_values(p, lab).items()]
            preds.append((split, idx, p))
        t0 = time.perf_counter()
        store.log_checkpoint(run_id, member, "swa", None, rows, preds)
        timed_s += time.perf_counter() - t0
        pred_rows += sum(len(p[1]) for p in preds)
        calls += 1
        store.set_swa_epochs(run_id, member, sorted(epoch_probs))
        best = max(history, key=lambda e: (history[e], -e))  # ties to the earliest epoch
        store.finish_member(run_id, member, "finished", selected_checkpoint=f"epoch-{best}")
        # as `runner apply` does when a member finishes: every registered strategy's pick
        picks = pick_all(registry, MemberHistory.of(member, store.member_epochs(run_id, member), has_swa=True))
        store.log_selections(run_id, member, picks)
    store.set_run_status(run_id, "finished")
    return {"run_id": run_id, "insert_s": timed_s, "prediction_rows": pred_rows, "log_checkpoint_calls": calls}


# --------------------------------------------------------------------------------------------------
# compare and ensemble


def time_compare(store, run_id: str, every: bool) -> tuple[float, str]:
    from rich.console import Console

    from runner.analysis.compare import compare, default_strategies, render
    from runner.plugins.registry import load_registry

    t0 = time.perf_counter()
    registry = load_registry(None)
    run = store.run(run_id)
    c = compare(store, run, registry, None if every else default_strategies(run, registry))
    console = Console(file=io.StringIO(), width=100)
    console.print(render(c))
    return time.perf_counter() - t0, console.file.getvalue()


def time_read_probabilities(store, run_id: str) -> float:
    """The baseline: every member checkpoint's valid and test probabilities read once, as numpy arrays."""
    t0 = time.perf_counter()
    keys = store.query("SELECT DISTINCT member, checkpoint FROM predictions WHERE run_id = ? AND kind = 'member'",
                       [run_id])[1]
    with store.probabilities() as reader:
        for member, checkpoint in keys:
            for split in ("valid", "test"):
                reader.checkpoint(run_id, "member", member, checkpoint, split)
    return time.perf_counter() - t0


def time_ensemble_fit(store, run_id: str) -> tuple[float, object]:
    from runner.plugins.registry import load_registry
    from runner.posthoc.ensemble import build_ensemble

    t0 = time.perf_counter()
    ens = build_ensemble(store, store.run(run_id), load_registry(None), "selected", "fit", name="bench-fit")
    return time.perf_counter() - t0, ens


def time_cli_ensemble(store_path: Path, run_id: str) -> float:
    runner_exe = Path(sys.executable).with_name("runner")
    cmd = ([str(runner_exe)] if runner_exe.exists() else [sys.executable, "-m", "runner.cli"])
    cmd += ["ensemble", run_id, "--weights", "fit", "--name", "bench-fit-cli", "--store", str(store_path)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr}")
    return dt


# --------------------------------------------------------------------------------------------------
# SWA peak memory


def write_checkpoints(out: Path, k: int, small: bool) -> tuple[list[Path], int, int]:
    """K safetensors files of a BERT-base-shaped classifier, each one perturbed; (files, bytes, params)."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(num_labels=NUM_LABELS)
    if small:  # about 1/10 of the parameters
        cfg = BertConfig(num_labels=NUM_LABELS, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=1024)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    state = {k_: v.detach().clone().contiguous() for k_, v in model.state_dict().items()}
    del model
    gc.collect()
    model_bytes = sum(t.numel() * t.element_size() for t in state.values())
    params = sum(t.numel() for t in state.values() if t.is_floating_point())
    files = []
    g = torch.Generator().manual_seed(1)
    for i in range(k):
        perturbed = {}
        for name, t in state.items():
            if t.is_floating_point():
                perturbed[name] = t + 0.01 * torch.randn(t.shape, generator=g, dtype=t.dtype)
            else:
                perturbed[name] = t
        path = out / f"epoch-{i + 1}.safetensors"
        save_file(perturbed, str(path))
        files.append(path)
        del perturbed
    del state
    gc.collect()
    return files, model_bytes, params


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def swa_child(mode: str, files: list[str]) -> None:
    """Runs in a fresh interpreter: average the files, print {baseline, peak, method} as JSON."""
    import torch  # noqa: F401  (imports before the baseline)
    from safetensors.torch import load_file

    from runner.train.swa import average_checkpoints

    paths = [Path(f) for f in files]
    gc.collect()
    baseline_kb = _status_kb("VmRSS")
    try:  # reset the high-water mark to the current RSS, so VmHWM is the peak of the call alone
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM after clear_refs reset"
    except OSError:
        method = "VmHWM - baseline (no reset: includes the import peak if it was higher)"
    if mode == "stream":
        out = average_checkpoints(paths)
    else:  # naive: every state dict in memory at once, then the mean
        states = [load_file(str(p)) for p in paths]
        out = {k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
               if states[0][k].is_floating_point() else states[-1][k] for k in states[0]}
        del states
    peak_kb = _status_kb("VmHWM")
    result_bytes = sum(t.numel() * t.element_size() for t in out.values())
    print(json.dumps({"baseline_kb": baseline_kb, "peak_kb": peak_kb, "method": method,
                      "result_bytes": result_bytes}))


def measure_swa(files: list[Path], mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "_swa_child", mode, *map(str, files)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"SWA child ({mode}) failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "ok" if ok else "MISSED"


def measure_run(work: Path, fig: dict, args, n_examples: int, say) -> None:
    """The single large run: insert, compare (in-process and cold/warm), ensemble fit, the CLI ensemble."""
    from replay_sweep import timed_child

    from runner.store import Store

    store_path = work / "replay.duckdb"
    say(f"building the run: {args.members} members x {args.epochs} epochs x {n_examples:,} examples x 2 splits "
        f"(+1 SWA checkpoint per member) in {store_path}")
    t0 = time.perf_counter()
    built = build_store(store_path, args.members, args.epochs, n_examples)
    run_id = built["run_id"]
    fig.update(run_id=run_id, run_build_s=round(time.perf_counter() - t0, 2), run_prediction_rows=built["prediction_rows"],
               run_insert_rows_per_s=round(built["prediction_rows"] / built["insert_s"]),
               run_bytes_per_row=round(store_path.stat().st_size / built["prediction_rows"], 2))
    store = Store(store_path).open(create=False)
    reader = Store(store_path).open_read()
    before = hashlib.sha256(store_path.read_bytes()).hexdigest(), store_path.stat().st_mtime_ns
    base_s = min(time_read_probabilities(reader, run_id) for _ in range(3))
    timed = timed_child("compare", store_path, run_id)
    all_s, text = min(time_compare(reader, run_id, every=True) for _ in range(3))
    after = hashlib.sha256(store_path.read_bytes()).hexdigest(), store_path.stat().st_mtime_ns
    assert before == after, "compare changed the store"
    fig.update(run_read_probabilities_s=round(base_s, 3), run_compare_cold_s=round(timed["cold"], 3),
               run_compare_warm_s=round(timed["warm"], 3), run_compare_all_s=round(all_s, 3),
               compare_store_unchanged=True)
    if args.small:
        return
    fit_times = []
    for _ in range(3):
        dt, ens = time_ensemble_fit(store, run_id)
        fit_times.append(dt)
    fig.update(ensemble_fit_s=round(min(fit_times), 3), ensemble_fit_weights=[round(float(w), 4) for w in ens.weights])
    fig["ensemble_cli_s"] = round(time_cli_ensemble(store_path, run_id), 3)


def measure_sweep(work: Path, fig: dict, args, say) -> None:
    from replay_sweep import build_sweep, dataframe_rows_per_s, sweep_peak_rss_gb, timed_child

    trials, members, epochs, examples = args.trials, args.sweep_members, args.sweep_epochs, args.sweep_examples
    total = trials * members * epochs * examples * 2
    store_path = work / "sweep.duckdb"
    say(f"building the sweep: {trials} trials x {members} members x {epochs} epochs x {examples:,} examples x 2 "
        f"splits = {total:,} prediction rows in {store_path}")
    start = time.perf_counter()
    last = [start]

    def progress(rows: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 10 or rows == total:
            last[0] = now
            eta = (now - start) / rows * (total - rows)
            say(f"  {rows:,} / {total:,} rows, {now - start:.0f} s, about {eta:.0f} s left")

    built = build_sweep(store_path, work / "bare.duckdb", work / "journal.log", trials, members, epochs, examples,
                        progress=progress)
    fig.update(sweep_prediction_rows=built["rows"], sweep_build_s=round(time.perf_counter() - start, 1),
               insert_rows_per_s=round(built["rows"] / built["insert_s"]),
               bare_insert_rows_per_s=round(built["rows"] / built["bare_s"]),
               bytes_per_row=round(store_path.stat().st_size / built["rows"], 2),
               bare_bytes_per_row=round((work / "bare.duckdb").stat().st_size / built["rows"], 2))
    fig["insert_vs_bare"] = round(fig["insert_rows_per_s"] / fig["bare_insert_rows_per_s"], 2)
    before = hashlib.sha256(store_path.read_bytes()).hexdigest()
    say("reading: compare of one trial, the sweep view, DataFrames, runner sweep's peak RSS")
    compare = timed_child("compare", store_path, built["run_id"])
    view = timed_child("sweep", store_path, built["sweep_id"])
    frames = dataframe_rows_per_s(store_path, built["run_id"])
    fig.update(compare_cold_s=round(compare["cold"], 3), compare_warm_s=round(compare["warm"], 3),
               sweep_view_cold_s=round(view["cold"], 3), sweep_view_warm_s=round(view["warm"], 3),
               dataframe_rows_per_s=round(min(frames.values())),
               **{f"dataframe_{k}_rows_per_s": round(v) for k, v in frames.items()},
               sweep_peak_rss_gb=round(sweep_peak_rss_gb(store_path, built["sweep_id"]), 3))
    assert hashlib.sha256(store_path.read_bytes()).hexdigest() == before, "a read command changed the store"


def report(fig: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"runner store replay ({fig['scale']}; run {fig['run_prediction_rows']:,} rows, sweep "
                        f"{fig['sweep_prediction_rows']:,} rows)")
    for col in ("figure", "value", "target", "verdict"):
        table.add_column(col, justify="right" if col == "value" else "left")

    def row(label: str, key: str, unit: str, target_key: str | None = None, higher: bool = False, fmt=",.3f"):
        if key not in fig:
            return
        t = TARGETS.get(target_key or key)
        table.add_row(label, f"{fig[key]:{fmt}}{unit}", "" if t is None else f"{'≥' if higher else '≤'} {t:,}{unit}",
                      "" if t is None else verdict(fig[key], t, higher))

    row("sweep: prediction insert (log_checkpoint)", "insert_rows_per_s", " rows/s", higher=True, fmt=",.0f")
    row("sweep: DuckDB's bare Arrow insert, same rows (baseline)", "bare_insert_rows_per_s", " rows/s", "-", fmt=",.0f")
    row("sweep: insert / bare insert", "insert_vs_bare", "x", higher=True, fmt=".2f")
    row("sweep: bytes per prediction row", "bytes_per_row", " B", fmt=".2f")
    row("sweep: compare of one trial, cold", "compare_cold_s", " s")
    row("sweep: compare of one trial, warm", "compare_warm_s", " s")
    row("sweep: runner sweep view + re-scoring, cold", "sweep_view_cold_s", " s")
    row("sweep: runner sweep view + re-scoring, warm", "sweep_view_warm_s", " s", "-")
    row("sweep: one trial's predictions, pandas -> numpy", "dataframe_pandas_rows_per_s", " rows/s",
        "dataframe_rows_per_s", True, ",.0f")
    row("sweep: one trial's predictions, polars -> numpy", "dataframe_polars_rows_per_s", " rows/s",
        "dataframe_rows_per_s", True, ",.0f")
    row("sweep: peak RSS of `runner sweep`", "sweep_peak_rss_gb", " GB")
    row("run: prediction insert (log_checkpoint)", "run_insert_rows_per_s", " rows/s", "insert_rows_per_s", True,
        ",.0f")
    row("run: every member checkpoint's probabilities read once", "run_read_probabilities_s", " s", "-")
    row("run: compare, cold", "run_compare_cold_s", " s", "compare_cold_s")
    row("run: compare, warm", "run_compare_warm_s", " s", "compare_warm_s")
    row("run: compare --all (every strategy's ensemble in memory)", "run_compare_all_s", " s", "-")
    row("run: ensemble --weights fit (in-process)", "ensemble_fit_s", " s")
    row("run: `runner ensemble --weights fit` (CLI, with start-up)", "ensemble_cli_s", " s", "-")
    row(f"SWA K={fig.get('swa_k')} peak extra / one model", "swa_peak_ratio", "x", fmt=".2f")
    row("naive SWA (all K loaded) peak extra / one model", "swa_naive_peak_ratio", "x", "-", fmt=".2f")
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="seconds: a small run and sweep, no SWA (the CI smoke test)")
    ap.add_argument("--json", action="store_true", help="stdout: only the sweep-scale figures, as one JSON object")
    ap.add_argument("--skip-swa", action="store_true", help="skip the SWA memory measurement")
    ap.add_argument("--skip-run", action="store_true", help="skip the single large run (the sweep figures only)")
    ap.add_argument("--members", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--sweep-members", type=int, default=None)
    ap.add_argument("--sweep-epochs", type=int, default=None)
    ap.add_argument("--sweep-examples", type=int, default=None)
    ap.add_argument("--swa-k", type=int, default=5)
    ap.add_argument("--no-naive", action="store_true", help="skip the naive (all K at once) SWA contrast")
    ap.add_argument("--dir", type=Path, default=None, help="work here (default: a temp dir, deleted after)")
    args = ap.parse_args(argv)
    small = {"members": 2, "epochs": 3, "trials": 3, "sweep_members": 2, "sweep_epochs": 2, "sweep_examples": 1000}
    full = {"members": 10, "epochs": 10, "trials": 100, "sweep_members": 3, "sweep_epochs": 10, "sweep_examples": 10_000}
    for k, v in (small if args.small else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    n_examples = 2_000 if args.small else 50_000

    from rich.console import Console

    console = Console(width=160, stderr=args.json) if not sys.stdout.isatty() else Console(stderr=args.json)

    def say(text: str) -> None:
        console.print(text, highlight=False, markup=False)

    work = Path(tempfile.mkdtemp(prefix="runner-replay-", dir=args.dir))
    fig: dict = {"scale": "small" if args.small else "full", "num_labels": NUM_LABELS, "run_prediction_rows": 0}
    try:
        if not args.skip_run:
            measure_run(work, fig, args, n_examples, say)
        measure_sweep(work, fig, args, say)
        if not (args.skip_swa or args.small):
            ck = work / "swa"
            ck.mkdir()
            say(f"writing {args.swa_k} BERT-base-shaped checkpoints")
            files, model_bytes, params = write_checkpoints(ck, args.swa_k, False)
            stream = measure_swa(files, "stream")
            extra = (stream["peak_kb"] - stream["baseline_kb"]) * 1024
            fig.update(swa_k=args.swa_k, model_mb=round(model_bytes / 2**20, 1),
                       swa_peak_ratio=round(extra / model_bytes, 3), swa_method=stream["method"])
            if not args.no_naive:
                naive = measure_swa(files, "naive")
                fig["swa_naive_peak_ratio"] = round((naive["peak_kb"] - naive["baseline_kb"]) * 1024 / model_bytes, 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(fig, console)
    if args.json:
        print(json.dumps({k: fig[k] for k in JSON_KEYS}))
    else:
        print(json.dumps(fig))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_swa_child":
        swa_child(sys.argv[2], sys.argv[3:])
    else:
        main()
