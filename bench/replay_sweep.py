"""The sweep scale of bench/replay.py: a stored sweep of N trials x members x epochs x examples x 2 splits
written through runner's own store API, DuckDB's bare Arrow insert of the same rows as the baseline, and
the read figures (compare of one trial, `runner sweep`'s view with the re-scoring table, DataFrame
reads, the peak RSS of `runner sweep`), each measured in a fresh process so that "cold" is cold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from replay import CLASS_SHARES, LABEL_NAMES, NUM_LABELS, dirichlet_around, fake_spec, metric_values, sharpen

HERE = Path(__file__).resolve()


def build_sweep(path: Path, bare_path: Path, journal: Path, trials: int, members: int, epochs: int,
                examples: int, seed: int = 1, progress=None) -> dict:
    """Write the sweep; time every `log_checkpoint` and, beside it, the bare insert of the same rows."""
    import duckdb
    import optuna
    import pyarrow as pa
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from runner.core.records import MemberHistory
    from runner.core.selection import pick_all
    from runner.data.prepare import Split
    from runner.plugins.registry import load_registry
    from runner.store import Store

    rng = np.random.default_rng(seed)
    store = Store(path).open()
    labels = {s: rng.choice(NUM_LABELS, examples, p=CLASS_SHARES) for s in ("valid", "test")}
    splits = {"train": Split([f"train review {i}" for i in range(examples)], rng.choice(NUM_LABELS, examples)),
              **{s: Split([f"{s} review {i}: a film I watched" for i in range(examples)], lab)
                 for s, lab in labels.items()}}
    dataset_id = f"bench-sweep-{examples}-{seed}"
    store.put_examples(dataset_id, splits)
    names = [f"m{i}" for i in range(members)]
    sweep_id = f"bench-sweep-{trials}"
    spec = fake_spec(names, epochs)
    store.put_sweep(sweep_id, "bench-sweep", spec, str(journal), "best_eval_accuracy", None, "maximize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=sweep_id, direction="maximize",
                                storage=JournalStorage(JournalFileBackend(str(journal))))
    dist = {"loss.gamma": optuna.distributions.FloatDistribution(0.5, 4.0),
            "train.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    registry = load_registry(None)
    shared = {s: dirichlet_around(rng, lab, 1.3) for s, lab in labels.items()}
    idx = np.arange(examples, dtype=np.int32)

    bare = duckdb.connect(str(bare_path))
    bare.execute(f"CREATE TABLE bare (ckpt INTEGER NOT NULL, idx INTEGER NOT NULL, pred SMALLINT NOT NULL, "
                 f"probs FLOAT[{NUM_LABELS}] NOT NULL)")
    timed_s = bare_s = 0.0
    rows = calls = ckpt = 0
    for t in range(trials):
        params = {"loss.gamma": float(rng.uniform(0.5, 4.0)), "train.learning_rate": float(10 ** rng.uniform(-4, -2))}
        run_id = f"bench-sweep-t{t:03d}"
        store.create_run(run_id, "bench-sweep", spec, f"hash-{t}", dataset_id, LABEL_NAMES)
        store.put_trial(sweep_id, t, "running", params, run_id)
        trial_skill = 0.3 + 0.6 * rng.random()
        finals = []
        for mi, member in enumerate(names):
            store.start_member(run_id, member, "scratch", None, mi, {})
            skill = trial_skill + 0.2 * rng.random()
            history = {}
            for epoch in range(1, epochs + 1):
                boost = skill * (0.6 + 0.4 * (1 - np.exp(-epoch / 2))) + rng.normal(0, 0.05)
                metric_rows = [("train", "loss", float(1.2 * np.exp(-0.25 * epoch)))]
                preds = []
                for split, lab in labels.items():
                    p = sharpen(0.75 * shared[split] + 0.25 * dirichlet_around(rng, lab, boost),
                                0.8 + 0.08 * epoch).astype(np.float32)
                    metric_rows += [(split, k, v) for k, v in metric_values(p, lab).items()]
                    preds.append((split, idx, p))
                history[epoch] = next(v for s, k, v in metric_rows if s == "valid" and k == "accuracy")
                t0 = time.perf_counter()
                store.log_checkpoint(run_id, member, f"epoch-{epoch}", epoch, metric_rows, preds)
                timed_s += time.perf_counter() - t0
                # the baseline: the same rows, Arrow-inserted into one bare table over one open connection
                t0 = time.perf_counter()
                bare.begin()
                for _, ix, p in preds:
                    ckpt += 1
                    bare.register("b", pa.table({"idx": pa.array(ix), "pred": pa.array(p.argmax(1).astype(np.int16)),
                                                 "probs": pa.FixedSizeListArray.from_arrays(pa.array(p.reshape(-1)),
                                                                                            NUM_LABELS)}))
                    bare.execute("INSERT INTO bare SELECT ?::INTEGER, idx, pred, probs FROM b", [ckpt])
                    bare.unregister("b")
                bare.commit()
                bare_s += time.perf_counter() - t0
                rows += sum(len(x[1]) for x in preds)
                calls += 1
                if progress is not None:
                    progress(rows)
            best = max(history, key=lambda e: (history[e], -e))
            store.finish_member(run_id, member, "finished", selected_checkpoint=f"epoch-{best}")
            store.log_selections(run_id, member, pick_all(registry, MemberHistory.of(
                member, store.member_epochs(run_id, member), has_swa=False)))
            finals.append(history[best])
        store.set_run_status(run_id, "finished")
        value = float(np.mean(finals))
        store.put_trial(sweep_id, t, "finished", params, run_id, value)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dist, value=value))
    bare.execute("CHECKPOINT")
    bare.close()
    return {"sweep_id": sweep_id, "run_id": "bench-sweep-t000", "rows": rows, "calls": calls, "insert_s": timed_s,
            "bare_s": bare_s}


# --------------------------------------------------------------------------------------------------
# measured in fresh processes


def child(what: str, store_path: str, ref: str) -> None:
    """In a fresh interpreter, imports and the plugin registry loaded first: time `what` once cold (the
    first read of the store in the process) and then warm (the best of three), print {cold, warm}."""
    import io

    import pyarrow  # noqa: F401
    from rich.console import Console

    from runner.analysis import compare as compare_mod
    from runner.analysis import sweep_view
    from runner.plugins.registry import load_registry
    from runner.store import Store
    try:  # pyarrow imports pandas on first use of pa.array(numpy): start-up, not the read
        import pandas  # noqa: F401
    except ImportError:
        pass
    registry = load_registry(None)  # start-up too: the CLI loads the plugins once per process

    def once() -> float:
        t0 = time.perf_counter()
        store = Store(store_path).open_read()
        if what == "compare":
            run = store.run(ref)
            table = compare_mod.render(compare_mod.compare(store, run, registry,
                                                           compare_mod.default_strategies(run, registry)))
        else:
            table = sweep_view.render(sweep_view.load_view(store, ref, registry))
        Console(file=io.StringIO(), width=100).print(table)
        return time.perf_counter() - t0

    cold = once()
    warm = min(once() for _ in range(3))
    print(json.dumps({"cold": cold, "warm": warm}))


def timed_child(what: str, store_path: Path, ref: str) -> dict:
    proc = subprocess.run([sys.executable, str(HERE), what, str(store_path), ref], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what} child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sweep_peak_rss_gb(store_path: Path, sweep_id: str) -> float:
    """Peak RSS of the real `runner sweep SWEEP` CLI (the process's own, through wait4's rusage)."""
    exe = Path(sys.executable).with_name("runner")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "runner.cli"]
    proc = subprocess.Popen(cmd + ["sweep", sweep_id, "--store", str(store_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "100"})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"runner sweep failed ({proc.returncode}):\n{proc.stderr.read().decode()}")
    return usage.ru_maxrss / 2**20  # KiB on Linux


def dataframe_rows_per_s(store_path: Path, run_id: str) -> dict:
    """Every prediction of one run (each checkpoint, both splits) as a pandas and a polars DataFrame,
    then its probabilities as one (rows x classes) numpy array: rows/s of each (best of 3), in this process."""
    from runner.analysis.notebook import StoreView

    try:
        from runner.analysis.notebook import probs_array
    except ImportError:  # an older runner (the "before" figures): probs came back as a column of arrays
        def probs_array(frame):
            column = frame["probs"]
            return np.stack(column.to_numpy() if hasattr(column, "iloc") else column.to_list())

    def read(view):
        try:
            return view.predictions(run_id, split=None, checkpoint=None)
        except Exception:  # an older runner reads one checkpoint at a time
            frames = [view.predictions(run_id, split=None, checkpoint=f"epoch-{e}") for e in range(1, 1000)
                      if view.store.prediction_count(run_id, "member", "m0", f"epoch-{e}", "valid")]
            import pandas

            return pandas.concat(frames) if hasattr(frames[0], "iloc") else __import__("polars").concat(frames)

    out = {}
    for kind in ("pandas", "polars"):
        try:
            view = StoreView(store_path, frames=kind)
        except Exception:  # polars not installed: the figure is the pandas one alone
            continue
        best = None
        for _ in range(3):
            t0 = time.perf_counter()
            frame = read(view)
            probs = probs_array(frame)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        assert probs.shape == (len(frame), NUM_LABELS)
        out[kind] = len(frame) / best
    return out


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], sys.argv[3])
