"""Does the store keep up with a big run? A synthetic replay of a large run through runner's own API.

Builds a store as `runner apply` would leave it for 10 members x 10 epochs x 50,000 examples x
2 splits (valid and test) with 4 classes: 10M prediction rows for the epoch checkpoints, plus one
SWA checkpoint per member (1M rows more, so that all five strategies exist). Everything is written
through the `Store` API (`create_run`, `put_examples`, `start_member`, `log_checkpoint`,
`finish_member`); nothing is trained. The fake probabilities are Dirichlet samples around the true
label: a part shared by every member (how hard the example is) mixed with a part of each member's
own, with a per-member skill that grows over the epochs and a temperature that makes later epochs
over-confident, so accuracy is about 0.7, members differ, best-by-loss and best-by-accuracy pick
different epochs, and the ensemble gains a little.

Figures (each against its target):

1. insert rate of the prediction rows: prediction rows written / seconds inside `log_checkpoint`
   (Arrow batch building, opening the file, the idempotent delete, the inserts, the commit);
2. the whole `compare` table: `runner.analysis.compare.compare` + `render` + printing it, at the default
   strategies (the spec's, swa, last, best_eval_loss) and with every strategy (`--all`); each call
   computes the ensembles the run lacks in memory (a read command stores nothing: the store's checksum
   is checked unchanged), against the baseline of reading every member checkpoint's probabilities
   once (what any computation from them must do);
3. `ensemble --weights fit` over the 10 members: `runner.posthoc.ensemble.build_ensemble` in-process, and
   the real CLI (`runner ensemble RUN --weights fit`) as a subprocess, for reference (interpreter
   and import start-up included);
4. SWA peak memory: K=5 safetensors checkpoints of a BERT-base-shaped classifier (transformers'
   `BertConfig()` defaults, 4 labels, about 110M parameters, 440 MB in fp32), averaged by
   `runner.train.swa.average_checkpoints` in a fresh subprocess; the peak RSS above the RSS just before
   the call (VmHWM reset through /proc/self/clear_refs when the kernel allows it, else
   peak - baseline), divided by one model's bytes. A naive average (all K state dicts loaded at
   once) is measured the same way for contrast.

    python bench/replay.py              # full size (about 3 GB of temp files, deleted at the end)
    python bench/replay.py --small      # 1/10 of the examples, and a 1/10-size model for SWA
    python bench/replay.py --skip-swa   # the store figures only
    python bench/replay.py --dir DIR    # put the temp dir under DIR (it is deleted at the end all the same)

The last line of output is one JSON object with every figure.
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
TARGETS = {"insert_rows_per_s": 1_000_000, "compare_s": 2.0, "ensemble_fit_s": 2.0, "swa_peak_ratio": 2.5}

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="1/10 scale: 5,000 examples per split, a small model")
    ap.add_argument("--skip-swa", action="store_true", help="skip the SWA memory measurement")
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--swa-k", type=int, default=5)
    ap.add_argument("--no-naive", action="store_true", help="skip the naive (all K at once) SWA contrast")
    ap.add_argument("--dir", type=Path, default=None, help="work here (default: a temp dir, deleted after)")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from runner.store import Store

    console = Console(width=160) if not sys.stdout.isatty() else Console()
    n_examples = 5_000 if args.small else 50_000
    work = Path(tempfile.mkdtemp(prefix="runner-replay-", dir=args.dir))
    fig: dict = {"scale": "small" if args.small else "full", "members": args.members, "epochs": args.epochs,
                 "examples_per_split": n_examples, "num_labels": NUM_LABELS}
    try:
        store_path = work / "replay.duckdb"
        console.print(f"building the store: {args.members} members x {args.epochs} epochs x {n_examples:,} "
                      f"examples x 2 splits (+1 SWA checkpoint per member) in {store_path}", highlight=False)
        t0 = time.perf_counter()
        built = build_store(store_path, args.members, args.epochs, n_examples)
        run_id = built["run_id"]
        fig.update(run_id=run_id, build_total_s=round(time.perf_counter() - t0, 2),
                   prediction_rows=built["prediction_rows"], log_checkpoint_calls=built["log_checkpoint_calls"],
                   insert_s=round(built["insert_s"], 3),
                   insert_rows_per_s=round(built["prediction_rows"] / built["insert_s"]),
                   store_mb=round(store_path.stat().st_size / 2**20, 1))

        store = Store(store_path).open(create=False)
        reader = Store(store_path).open_read()
        before = hashlib.sha256(store_path.read_bytes()).hexdigest(), store_path.stat().st_mtime_ns
        base_s = min(time_read_probabilities(reader, run_id) for _ in range(3))
        default_s, text = min(time_compare(reader, run_id, every=False) for _ in range(3))
        all_s, _ = min(time_compare(reader, run_id, every=True) for _ in range(3))
        after = hashlib.sha256(store_path.read_bytes()).hexdigest(), store_path.stat().st_mtime_ns
        assert before == after, "compare changed the store"
        console.print(text, highlight=False, markup=False, end="")
        fig.update(read_probabilities_s=round(base_s, 3), compare_default_s=round(default_s, 3),
                   compare_all_s=round(all_s, 3), compare_all_ratio=round(all_s / base_s, 2),
                   compare_store_unchanged=True)

        fit_times = []
        for _ in range(3):
            dt, ens = time_ensemble_fit(store, run_id)
            fit_times.append(dt)
        fig.update(ensemble_fit_s=round(min(fit_times), 3), ensemble_fit_first_s=round(fit_times[0], 3),
                   ensemble_fit_weights=[round(float(w), 4) for w in ens.weights],
                   ensemble_test_accuracy=round(ens.metrics.get("test_accuracy", float("nan")), 4))
        fig["ensemble_cli_s"] = round(time_cli_ensemble(store_path, run_id), 3)
        accs = store.query("SELECT min(test_accuracy), max(test_accuracy) FROM epochs WHERE run_id = ? "
                           "AND member <> 'ensemble'", [run_id])[1][0]
        fig.update(member_test_accuracy_range=[round(a, 4) for a in accs])

        if not args.skip_swa:
            ck = work / "swa"
            ck.mkdir()
            console.print(f"writing {args.swa_k} BERT-{'small' if args.small else 'base'}-shaped checkpoints",
                          highlight=False)
            files, model_bytes, params = write_checkpoints(ck, args.swa_k, args.small)
            stream = measure_swa(files, "stream")
            extra = (stream["peak_kb"] - stream["baseline_kb"]) * 1024
            fig.update(swa_k=args.swa_k, model_params=params, model_mb=round(model_bytes / 2**20, 1),
                       swa_peak_extra_mb=round(extra / 2**20, 1), swa_peak_ratio=round(extra / model_bytes, 3),
                       swa_method=stream["method"])
            if not args.no_naive:
                naive = measure_swa(files, "naive")
                extra = (naive["peak_kb"] - naive["baseline_kb"]) * 1024
                fig.update(swa_naive_peak_extra_mb=round(extra / 2**20, 1),
                           swa_naive_peak_ratio=round(extra / model_bytes, 3))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title=f"runner store replay ({fig['scale']}: {fig['prediction_rows']:,} prediction rows)")
    for col in ("figure", "value", "target", "verdict"):
        table.add_column(col, justify="right" if col == "value" else "left")
    table.add_row("prediction insert rate", f"{fig['insert_rows_per_s']:,.0f} rows/s",
                  f"≥ {TARGETS['insert_rows_per_s']:,} rows/s",
                  verdict(fig["insert_rows_per_s"], TARGETS["insert_rows_per_s"], True))
    table.add_row("baseline: every member checkpoint's probabilities read once", f"{fig['read_probabilities_s']:.3f} s",
                  "reference", "")
    table.add_row("compare + render, default strategies (ensembles in memory)", f"{fig['compare_default_s']:.3f} s",
                  f"≤ {TARGETS['compare_s']} s", verdict(fig["compare_default_s"], TARGETS["compare_s"], False))
    table.add_row("compare --all + render (every strategy's ensemble in memory)", f"{fig['compare_all_s']:.3f} s "
                  f"({fig['compare_all_ratio']:.1f}x baseline)", f"≤ {TARGETS['compare_s']} s",
                  verdict(fig["compare_all_s"], TARGETS["compare_s"], False))
    table.add_row("ensemble --weights fit (in-process)", f"{fig['ensemble_fit_s']:.3f} s",
                  f"≤ {TARGETS['ensemble_fit_s']} s", verdict(fig["ensemble_fit_s"], TARGETS["ensemble_fit_s"], False))
    table.add_row("`runner ensemble --weights fit` (CLI, with start-up)", f"{fig['ensemble_cli_s']:.3f} s",
                  "reference", "")
    if "swa_peak_ratio" in fig:
        table.add_row(f"SWA K={fig['swa_k']} peak extra / model ({fig['model_mb']} MB)",
                      f"{fig['swa_peak_ratio']:.2f}x", f"≤ {TARGETS['swa_peak_ratio']}x",
                      verdict(fig["swa_peak_ratio"], TARGETS["swa_peak_ratio"], False))
        if "swa_naive_peak_ratio" in fig:
            table.add_row("naive SWA (all K loaded) peak extra / model", f"{fig['swa_naive_peak_ratio']:.2f}x",
                          "contrast", "")
    console.print(table)
    for key, target in TARGETS.items():
        keys = ["compare_default_s", "compare_all_s"] if key == "compare_s" else [key]
        for k in keys:
            if k in fig:
                fig[f"{k}_verdict"] = verdict(fig[k], target, key == "insert_rows_per_s")
    print(json.dumps(fig))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_swa_child":
        swa_child(sys.argv[2], sys.argv[3:])
    else:
        main()
