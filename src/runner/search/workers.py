"""`runner apply SPEC --workers N`: N processes on this machine run one sweep's trials at once.

Each worker is the same `runner apply SPEC` (same --store, --plugins and --set) in a process of its
own: it joins the sweep's Optuna study (its storage is shared, Optuna's supported way to distribute)
and runs trials until the study has enough; the store is shared through its short transactions.
The command that was typed is worker 0 and waits for the others. On a machine with GPUs each worker
sees one device (`CUDA_VISIBLE_DEVICES`, round robin); on a CPU the cores are split between workers
(`OMP_NUM_THREADS`, `torch.set_num_threads`), since two trainings that each take every core run
slower together than one after the other. Workers 1..N-1 write their output to
`runs/_sweeps/<sweep_id>/worker-<k>.log`.

Under Ray (`--backend ray --workers N`) the workers are N threads of this process instead: each runs
the same loop over the study, its trials' members are Ray tasks placed on the cluster, and this
process stays the only writer of the store (`in_threads`).

Workers on several machines: point `[sweep] storage` at a database URL (postgresql://...) or a
journal file on a shared filesystem, put the store and `runs/` where every machine reaches them, and
start `runner apply SPEC` on each machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORKER_ENV = "RUNNER_SWEEP_WORKER"  # set in the processes this module starts (their index)


def devices() -> int:
    """GPUs on this machine, counted without initialising CUDA."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch build with CUDA: a CPU
        return 0


def worker_env(k: int, n: int, gpus: int) -> dict[str, str]:
    env = {WORKER_ENV: str(k), "PYTHONUNBUFFERED": "1"}
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [i.strip() for i in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = ids[k % len(ids)]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    return env


def start(argv: list[str], n: int, log_folder: Path) -> list[tuple[subprocess.Popen, Path]]:
    """Start workers 1..n-1 running `runner <argv>` (the typed command without --workers); set this
    process up as worker 0."""
    gpus = devices()
    log_folder.mkdir(parents=True, exist_ok=True)
    procs = []
    for k in range(1, n):
        log = log_folder / f"worker-{k}.log"
        env = dict(os.environ, **worker_env(k, n, gpus))
        with open(log, "w") as f:
            procs.append((subprocess.Popen([sys.executable, "-m", "runner.cli", *argv], env=env, stdout=f,
                                           stderr=subprocess.STDOUT), log))
    own = worker_env(0, n, gpus)
    os.environ.update(own)
    if not gpus:
        import torch

        torch.set_num_threads(int(own["OMP_NUM_THREADS"]))
    return procs


def wait(procs: list[tuple[subprocess.Popen, Path]]) -> list[str]:
    """Wait for the workers; a line for each that failed, naming its log."""
    failed = []
    for k, (proc, log) in enumerate(procs, start=1):
        code = proc.wait()
        if code != 0:
            failed.append(f"worker {k} exited {code}; its output is in {log}")
    return failed


def in_threads(n: int, loop, progress):
    """Under Ray: `loop(progress_view)` (runner.search.sweep.run_sweep of one study) in `n` threads at once;
    every trial's lines on one display. The result of the loop that ended last, failed if any failed."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    if progress is not None:
        progress.share()
    pool = ThreadPoolExecutor(n, thread_name_prefix="runner-sweep")
    try:
        futures = [pool.submit(loop, progress.fresh() if progress is not None else None) for _ in range(n)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        results = []
        for f in sorted(futures, key=lambda f: f in done):  # an exception first, else in finishing order
            results.append(f.result())
    finally:
        # an error or Ctrl-C: the other loops end when Ray stops their tasks (the backend's close)
        pool.shutdown(wait=False, cancel_futures=True)
        if progress is not None:
            progress.end_share()
    last = results[-1]
    if any(r.status == "failed" for r in results):
        last.status = "failed"
    elif all(r.status == "up-to-date" for r in results):
        last.status = "up-to-date"
    elif last.status == "up-to-date":
        last.status = "finished"
    return last
