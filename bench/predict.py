"""How fast does `runner predict`'s engine apply the quickstart ensemble, against a plain pipeline loop?

Trains the quickstart (specs/quickstart.toml: three small scratch encoders) in a temporary folder, or
reuses a store given with --store that holds a finished quickstart run, then predicts the same texts
(generated with runner.data.synthetic, another seed than the training data) two ways, each in its own
Python subprocess so that each pays the same interpreter start-up and its memory is its own:

(a) engine: `runner.use.predict.Predictor`, what `runner predict RUN INPUT` runs: the members' selected
    checkpoints, one tokenization per distinct tokenizer (the two BERTs share theirs), batches sorted
    by token count and padded to their longest text, `torch.inference_mode`, the stored ensemble weights;
(b) pipeline: for each member's checkpoint folder (the same files), a plain Hugging Face
    `pipeline("text-classification", top_k=None)` called on the whole list with the same batch size
    and truncation, its per-label scores turned into probability arrays, then the same weighted mean.

Both run on the CPU with the same torch thread count. Timed: the prediction of all texts after one
warm-up call of 256 texts; model loading is reported apart. Peak memory is the subprocess's resident
set high-water mark (VmHWM from /proc/self/status; ru_maxrss where there is no /proc), which includes
the interpreter, torch and the models. The script checks that both sides give the same ensemble
probabilities (max abs difference printed) before it prints the ratio engine / pipeline in texts/s.

    python bench/predict.py                          # trains the quickstart first (about 2 minutes)
    python bench/predict.py --store results.duckdb   # reuse a store with a finished quickstart run
    python bench/predict.py --texts 50000 --batch-size 64 --threads 2
    python bench/predict.py --onnx --train-size 11000   # + ONNX fp32 and int8, on an 11,000-review quickstart

With --onnx, the run is also exported twice (`runner export RUN DIR --onnx`, and `--onnx --quantize
int8`) and two more sides run the same texts through `runner.load(DIR)` in ONNX Runtime: fp32 and
int8 (dynamic quantization). Each side also predicts the run's test split (from the store), so the
table shows its test accuracy beside its speed: int8's target is within 0.5 points of fp32 and at
least 2x the torch engine's texts/s on the CPU.

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARMUP = 256


def memory_mb(field: str) -> float:
    """A line of /proc/self/status in MB: VmRSS (now) or VmHWM (the peak); where there is no /proc, the
    peak from getrusage and NaN for now."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if field == "VmHWM":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return float("nan")


def choice_of(store: str, run: str):
    from runner.plugins.registry import load_registry
    from runner.store import Store
    from runner.use.choice import choose

    st = Store(store).open_read()
    registry = load_registry(None)
    return choose(st, st.run(run), registry, "selected"), registry


def worker(args) -> None:
    """One side, in its own process: prints {"seconds", "load_seconds", "peak_rss_mb", ...}."""
    import numpy as np
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = json.loads(Path(args.texts_file).read_text())
    choice, registry = choice_of(args.store, args.run)
    t0 = time.perf_counter()
    test_probs = None
    if args.worker in ("engine", "onnx", "int8"):
        if args.worker == "engine":
            from runner.use.predict import Predictor

            predictor = Predictor.load(choice, registry=registry, batch_size=args.batch_size, device="cpu",
                                       engine="torch")
        else:
            from runner.use.export import load

            predictor = load(args.export, batch_size=args.batch_size, device="cpu", engine="onnx")
        load_s = time.perf_counter() - t0
        predictor.run(texts[:WARMUP])
        after_load = memory_mb("VmRSS")
        t1 = time.perf_counter()
        probs = predictor.run(texts).probs
        seconds = time.perf_counter() - t1
        if args.test_file:
            test_probs = predictor.run(json.loads(Path(args.test_file).read_text())).probs
    else:
        from transformers import pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        pipes = []
        for m in choice.members:
            pipe = pipeline("text-classification", model=str(m.path), tokenizer=str(m.path), device=-1, top_k=None)
            pipes.append((pipe, int(m.info.get("max_length") or 512)))
        load_s = time.perf_counter() - t0
        labels = choice.labels

        def run(batch):
            out = []
            for pipe, max_length in pipes:
                scores = pipe(batch, batch_size=args.batch_size, truncation=True, max_length=max_length)
                out.append(np.array([[{d["label"]: d["score"] for d in row}[name] for name in labels]
                                     for row in scores], dtype=np.float32))
            p = np.tensordot(choice.weights, np.stack(out), axes=1).astype(np.float32)
            return p / p.sum(axis=1, keepdims=True)

        run(texts[:WARMUP])
        after_load = memory_mb("VmRSS")
        t1 = time.perf_counter()
        probs = run(texts)
        seconds = time.perf_counter() - t1
    np.save(args.probs_out, probs)
    if test_probs is not None:
        np.save(args.probs_out.replace(".npy", ".test.npy"), test_probs)
    print(json.dumps({"side": args.worker, "seconds": seconds, "load_seconds": load_s,
                      "texts_per_s": len(texts) / seconds, "rss_after_load_mb": after_load,
                      "peak_rss_mb": memory_mb("VmHWM"), "threads": torch.get_num_threads()}))


def test_split(store: Path, run: str) -> tuple[list[str], list[int]]:
    """The run's test texts and labels (the examples table, opened read-only)."""
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        dataset_id = con.execute("SELECT dataset_id FROM runs WHERE run_id = ? OR name = ? ORDER BY started_at DESC "
                                 "LIMIT 1", [run, run]).fetchone()[0]
        rows = con.execute("SELECT text, label FROM examples WHERE dataset_id = ? AND split = 'test' ORDER BY idx",
                           [dataset_id]).fetchall()
    finally:
        con.close()
    return [t for t, _ in rows], [int(y) for _, y in rows]


def train_quickstart(folder: Path, size: int | None = None) -> Path:
    store = folder / "results.duckdb"
    more = ["--set", f"data.options.size={size}"] if size else []
    print(f"training the quickstart in {folder} (runner apply specs/quickstart.toml {' '.join(more)}) ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "apply", str(REPO / "specs" / "quickstart.toml"),
                           "--store", str(store), *more], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    print(f"  trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="a store holding a finished quickstart run (default: train one)")
    ap.add_argument("--run", default="quickstart", help="the run's id or name (default quickstart)")
    ap.add_argument("--texts", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads on both sides (default: torch's)")
    ap.add_argument("--onnx", action="store_true", help="also ONNX Runtime sides: fp32 and int8 exports of the run")
    ap.add_argument("--train-size", type=int, default=None,
                    help="when training the quickstart: its synthetic reviews (default the spec's 3,000)")
    ap.add_argument("--worker", choices=["engine", "pipeline", "onnx", "int8"], help=argparse.SUPPRESS)
    ap.add_argument("--texts-file", help=argparse.SUPPRESS)
    ap.add_argument("--test-file", help=argparse.SUPPRESS)
    ap.add_argument("--export", help=argparse.SUPPRESS)
    ap.add_argument("--probs-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    import numpy as np

    from runner.data import synthetic

    with tempfile.TemporaryDirectory(prefix="runner-bench-predict-") as tmp:
        tmp = Path(tmp)
        store = Path(args.store).resolve() if args.store else train_quickstart(tmp, args.train_size)
        texts, _ = synthetic.generate(args.texts, seed=20240, language="en")
        (tmp / "texts.json").write_text(json.dumps(texts))
        sides = ["engine", "pipeline"]
        test_labels = None
        if args.onnx:
            test_texts, test_labels = test_split(store, args.run)
            (tmp / "test.json").write_text(json.dumps(test_texts))
            for side, more in (("onnx", []), ("int8", ["--quantize", "int8"])):
                proc = subprocess.run([sys.executable, "-m", "runner.cli", "export", args.run, str(tmp / side),
                                       "--store", str(store), "--onnx", *more], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"runner export --onnx {' '.join(more)} failed:\n{proc.stdout}{proc.stderr}")
            sides += ["onnx", "int8"]
        results = {}
        for side in sides:
            cmd = [sys.executable, __file__, "--worker", side, "--store", str(store), "--run", args.run,
                   "--texts-file", str(tmp / "texts.json"), "--batch-size", str(args.batch_size),
                   "--threads", str(args.threads), "--probs-out", str(tmp / f"{side}.npy"),
                   "--export", str(tmp / side)]
            if args.onnx:
                cmd += ["--test-file", str(tmp / "test.json")]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{side} failed:\n{proc.stdout}{proc.stderr}")
            results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            results[side]["process_seconds"] = time.perf_counter() - t0
            if args.onnx and side != "pipeline":
                test_probs = np.load(tmp / f"{side}.test.npy")
                results[side]["test_accuracy"] = float((test_probs.argmax(axis=1) == np.array(test_labels)).mean())
                results[side]["max_abs_diff_vs_engine"] = float(np.abs(np.load(tmp / f"{side}.npy")
                                                                       - np.load(tmp / "engine.npy")).max())
        diff = float(np.abs(np.load(tmp / "engine.npy") - np.load(tmp / "pipeline.npy")).max())

    e, p = results["engine"], results["pipeline"]
    print(f"\n{args.texts} texts, batch size {args.batch_size}, CPU, {e['threads']} torch threads, "
          f"3-member quickstart ensemble")
    print(f"{'':10} {'texts/s':>10} {'predict s':>10} {'load s':>8} {'RSS after load':>15} {'peak RSS':>10}"
          + (f" {'test acc':>9}" if args.onnx else ""))
    for r in results.values():
        acc = f" {r['test_accuracy']:>9.4f}" if "test_accuracy" in r else (" " * 10 if args.onnx else "")
        print(f"{r['side']:10} {r['texts_per_s']:>10.0f} {r['seconds']:>10.2f} {r['load_seconds']:>8.2f} "
              f"{r['rss_after_load_mb']:>12.0f} MB {r['peak_rss_mb']:>7.0f} MB{acc}")
    onnx_figures = {}
    if args.onnx:
        f32, i8 = results["onnx"], results["int8"]
        onnx_figures = {
            "test_examples": len(test_labels), "engine_test_accuracy": e["test_accuracy"],
            "onnx_texts_per_s": round(f32["texts_per_s"], 1), "int8_texts_per_s": round(i8["texts_per_s"], 1),
            "onnx_ratio": round(f32["texts_per_s"] / e["texts_per_s"], 3),
            "int8_ratio": round(i8["texts_per_s"] / e["texts_per_s"], 3),
            "onnx_test_accuracy": f32["test_accuracy"], "int8_test_accuracy": i8["test_accuracy"],
            "int8_minus_fp32_points": round(100 * (i8["test_accuracy"] - f32["test_accuracy"]), 2),
            "onnx_max_abs_diff": f32["max_abs_diff_vs_engine"], "int8_max_abs_diff": i8["max_abs_diff_vs_engine"]}
        print(f"ONNX fp32 / torch engine: {onnx_figures['onnx_ratio']:.2f}x texts/s, max |Δp| "
              f"{f32['max_abs_diff_vs_engine']:.1e}; int8 / torch engine: {onnx_figures['int8_ratio']:.2f}x (target "
              f">= 2x), test accuracy int8 - fp32 {onnx_figures['int8_minus_fp32_points']:+.2f} pt (target within "
              f"0.5) on {len(test_labels)} test examples")
    ratio = e["texts_per_s"] / p["texts_per_s"]
    print(f"engine / pipeline: {ratio:.2f}x (target >= 1.5x); max abs difference of the ensemble probabilities: "
          f"{diff:.2e}")
    print(json.dumps({"texts": args.texts, "batch_size": args.batch_size, "threads": e["threads"],
                      "engine_texts_per_s": round(e["texts_per_s"], 1),
                      "pipeline_texts_per_s": round(p["texts_per_s"], 1), "ratio": round(ratio, 3),
                      "engine_peak_rss_mb": round(e["peak_rss_mb"]), "pipeline_peak_rss_mb": round(p["peak_rss_mb"]),
                      "max_abs_diff": diff, **onnx_figures}))


if __name__ == "__main__":
    main()
