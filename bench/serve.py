"""How much does `runner serve`'s dynamic batching gain over a server that runs one request at a time?

Trains the quickstart (specs/quickstart.toml) in a temporary folder, or reuses a store given with
--store that holds a finished quickstart run, exports it (`runner export`), then starts two servers on
127.0.0.1, each its own process with the same torch thread count, one after the other:

(a) batched: `runner serve EXPORT` (requests merged into batches of up to --max-batch texts);
(b) naive: the same exported ensemble (`runner.load`) behind FastAPI and uvicorn, each request's
    texts run through the engine on their own, one request at a time (no merging): what a service
    that calls `predict_proba` in its handler does.

Each is driven over loopback by an async httpx client with 1, 8, 32 and 128 concurrent clients, each
client sending requests of one text (texts from runner.data.synthetic, another seed than training)
back to back, --requests requests per level (at least 4 per client). Reported per level: texts/s,
p50/p99 latency, errors (any answer but 200, or a failed connection); the server's resident memory
(VmRSS from /proc) before the first level and after the last. Then, unless --soak-s 0, the batched
server runs a soak at 32 clients for --soak-s seconds: errors and RSS growth.

    python bench/serve.py                                   # trains the quickstart first (~2 minutes)
    python bench/serve.py --store results.duckdb --requests 400 --soak-s 10

The load generator shares the machine with the server: on a small CPU it takes some of the cores the
server would have. The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32, 128)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def naive_server(export: str, port: int) -> None:
    """(b): one request at a time through the engine, in one worker thread (the event loop stays free)."""
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn
    from fastapi import FastAPI

    import runner

    predictor = runner.load(export)
    pool = ThreadPoolExecutor(max_workers=1)
    app = FastAPI()
    labels = predictor.labels

    @app.get("/health")
    async def health():
        return {"status": "ready"}

    @app.post("/predict")
    async def predict(body: dict):
        texts = body.get("texts") or [body["text"]]
        probs = await asyncio.get_running_loop().run_in_executor(pool, predictor.predict_proba, texts)
        return {"predictions": [{"pred_label": labels[int(p.argmax())], "pred_id": int(p.argmax()),
                                 **{f"p_{n}": float(x) for n, x in zip(labels, p)}} for p in probs]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start(cmd: list[str], port: int, threads: int) -> subprocess.Popen:
    import httpx

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{' '.join(cmd)}: no answer on /health within 300 s")


async def drive(url: str, texts: list[str], clients: int, requests: int | None, seconds: float | None) -> dict:
    """`clients` concurrent clients, one text per request, until `requests` are sent (or `seconds` pass)."""
    import httpx

    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + seconds if seconds else None
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        while (sent < requests) if requests else (time.perf_counter() < stop_at):
            text = texts[sent % len(texts)]
            sent += 1
            t0 = time.perf_counter()
            try:
                r = await c.post("/predict", json={"text": text})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(c) for _ in range(clients)])
        wall = time.perf_counter() - t0
    lat = sorted(latencies)
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000  # noqa: E731
    return {"clients": clients, "requests": len(lat), "texts_per_s": len(lat) / wall, "p50_ms": q(0.50),
            "p99_ms": q(0.99), "errors": errors}


def measure(name: str, cmd: list[str], port: int, threads: int, texts: list[str], requests: int,
            soak_s: float) -> dict:
    proc = start(cmd, port, threads)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(drive(url, texts, 4, 64, None))  # warm-up
        before = rss_mb(proc.pid)
        levels = [asyncio.run(drive(url, texts, n, max(requests, 4 * n), None)) for n in LEVELS]
        after = rss_mb(proc.pid)
        soak = None
        if soak_s:
            start_rss = rss_mb(proc.pid)
            soak = asyncio.run(drive(url, texts, 32, None, soak_s))
            soak.update(seconds=soak_s, rss_start_mb=start_rss, rss_end_mb=rss_mb(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    return {"name": name, "levels": levels, "rss_before_mb": before, "rss_after_mb": after, "soak": soak}


def train_quickstart(folder: Path) -> Path:
    store = folder / "results.duckdb"
    print(f"training the quickstart in {folder} (runner apply specs/quickstart.toml) ...", flush=True)
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "apply", str(REPO / "specs" / "quickstart.toml"),
                           "--store", str(store)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="a store holding a finished quickstart run (default: train one)")
    ap.add_argument("--run", default="quickstart", help="the run's id or name (default quickstart)")
    ap.add_argument("--requests", type=int, default=2000, help="requests per concurrency level (default 2000)")
    ap.add_argument("--soak-s", type=float, default=60.0, help="seconds of the soak at 32 clients (0: none)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each server (default 2)")
    ap.add_argument("--naive-server", nargs=2, metavar=("EXPORT", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_server:
        naive_server(args.naive_server[0], int(args.naive_server[1]))
        return

    from runner.data import synthetic

    with tempfile.TemporaryDirectory(prefix="runner-bench-serve-") as tmp:
        tmp = Path(tmp)
        store = Path(args.store).resolve() if args.store else train_quickstart(tmp)
        export = tmp / "export"
        proc = subprocess.run([sys.executable, "-m", "runner.cli", "export", args.run, str(export), "--store",
                               str(store)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stdout + proc.stderr)
        texts, _ = synthetic.generate(2000, seed=20240, language="en")
        port = free_port()
        batched = measure("batched", [sys.executable, "-m", "runner.cli", "serve", str(export), "--port", str(port),
                                      "--max-batch", str(args.max_batch), "--max-queue", "100000"],
                          port, args.threads, texts, args.requests, args.soak_s)
        port = free_port()
        naive = measure("naive", [sys.executable, __file__, "--naive-server", str(export), str(port)],
                        port, args.threads, texts, args.requests, 0)

    print(f"\nrunner serve (batched, --max-batch {args.max_batch}) vs one request at a time; run {args.run}, "
          f"CPU, {args.threads} torch threads, one text per request")
    print(f"{'clients':>7} {'batched t/s':>12} {'naive t/s':>10} {'ratio':>6} {'batched p50/p99 ms':>19} "
          f"{'naive p50/p99 ms':>17} {'errors':>7}")
    for b, n in zip(batched["levels"], naive["levels"]):
        print(f"{b['clients']:>7} {b['texts_per_s']:>12.0f} {n['texts_per_s']:>10.0f} "
              f"{b['texts_per_s'] / n['texts_per_s']:>5.2f}x {b['p50_ms']:>9.1f}/{b['p99_ms']:<9.1f}"
              f"{n['p50_ms']:>8.1f}/{n['p99_ms']:<8.1f} {b['errors']:>3}/{n['errors']}")
    for s in (batched, naive):
        print(f"{s['name']}: RSS {s['rss_before_mb']:.0f} MB before the first level, {s['rss_after_mb']:.0f} MB "
              "after the last")
    at32 = next(b for b in batched["levels"] if b["clients"] == 32)
    n32 = next(n for n in naive["levels"] if n["clients"] == 32)
    print(f"at 32 clients: {at32['texts_per_s'] / n32['texts_per_s']:.2f}x the naive server's texts/s "
          f"(target >= 3x); batched p99/p50 {at32['p99_ms'] / at32['p50_ms']:.2f} (target <= 4)")
    soak = batched["soak"]
    if soak:
        growth = soak["rss_end_mb"] / soak["rss_start_mb"] - 1
        print(f"soak, {soak['seconds']:.0f} s at 32 clients: {soak['requests']} requests, {soak['errors']} errors, "
              f"RSS {soak['rss_start_mb']:.0f} -> {soak['rss_end_mb']:.0f} MB ({growth:+.1%}; target 0 errors, "
              f"<= +10%)")
    print(json.dumps({"batched": batched, "naive": naive, "threads": args.threads, "max_batch": args.max_batch}))


if __name__ == "__main__":
    main()
