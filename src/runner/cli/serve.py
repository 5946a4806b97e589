"""`runner serve`: a run's ensemble (or an exported folder's) behind HTTP (runner.serve)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from runner.cli.app import PLUGINS_OPT, _read_registry, _registry, command, say
from runner.core.quiet import quiet_libraries
from runner.errors import InputError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@command
def serve(
    source: str = typer.Argument(..., metavar="RUN|DIR",
                                 help="A run (id or name) in the store, or a folder written by `runner export`."),
    strategy: Optional[str] = typer.Option(None, "--strategy",
                                           help="Which checkpoint of each member (as `runner predict`); an export "
                                                "has the one it was made with."),
    calibrated: bool = typer.Option(False, "--calibrated",
                                    help="Answer with the calibration `runner calibrate` stored (exit 2 if none)."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="The address to listen on. Default: this machine only; 0.0.0.0 (every "
                                  "interface) must be asked for."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="The TCP port."),
    max_batch: int = typer.Option(64, "--max-batch", min=1, max=65536,
                                  help="Texts of concurrent requests merged into one engine call."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0.0, max=10_000.0,
                                      help="How long a request waits for others to join its batch."),
    max_texts: int = typer.Option(256, "--max-texts", min=1, max=65536, help="Texts per request (413 beyond)."),
    max_text_bytes: int = typer.Option(65536, "--max-text-bytes", min=1, max=16 * 1024 * 1024,
                                       help="UTF-8 bytes per text (413 beyond)."),
    max_queue: int = typer.Option(1024, "--max-queue", min=1, max=1_000_000,
                                  help="Texts waiting for the engine; beyond, 503 with Retry-After."),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Server processes, each with its own copy of the models."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, max=65536,
                                             help="Texts per forward pass (default: the run's evaluation batch "
                                                  "size)."),
    store: Path = typer.Option("results.duckdb", "--store", help="The DuckDB results file."),
    plugins: Optional[Path] = PLUGINS_OPT,
):
    """Serve a run's ensemble (or an exported folder's) over HTTP until SIGTERM or Ctrl-C.

    POST /predict takes {"texts": [...]} or {"text": "..."} and answers each text's pred_label, pred_id
    and p_<label> as `runner predict` computes them; concurrent requests are merged into batches.
    GET /health, GET /metadata, and the OpenAPI page at /docs. SIGTERM answers the requests in flight,
    refuses new ones, and exits 0. Reads the store, never writes it.
    """
    # start-up time (runner.cli)
    from runner.serve.app import Limits
    from runner.serve.server import check_bind

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise InputError("runner serve needs FastAPI and uvicorn: pip install 'runner[serve]'") from None
    quiet_libraries()
    if host not in LOOPBACK:
        say(f"listening on {host}: other machines can reach this server (runner serve has no authentication)")
    check_bind(host, port)
    limits = Limits(max_texts=max_texts, max_text_bytes=max_text_bytes, max_batch=max_batch, max_wait_ms=max_wait_ms,
                    max_queue=max_queue)
    is_dir = _is_dir(source)
    registry = _registry(None, plugins) if is_dir else _read_registry(plugins, store, source)
    # start-up time (runner.cli)
    from runner.serve.load import app_for, load_served

    served = load_served(source, strategy, store, registry, plugins, calibrated, batch_size)
    p = served.predictor
    say(f"serving {len(p.members)} member(s) of run {p.choice.run.get('run_id')}, strategy {p.choice.strategy}"
        f"{', calibrated' if calibrated else ''} on http://{host}:{port} (docs: /docs); SIGTERM or Ctrl-C stops")
    if workers == 1:
        # start-up time (runner.cli)
        from runner.serve.server import serve as run_server

        run_server(app_for(served, calibrated, limits), host, port)
    else:
        import torch

        # start-up time (runner.cli)
        from runner.serve.server import serve_workers

        settings = {"source": source, "strategy": strategy, "store": str(store),
                    "plugins": str(plugins) if plugins else None, "calibrated": calibrated, "batch_size": batch_size,
                    "limits": asdict(limits), "threads": torch.get_num_threads() // workers}
        del served, p
        serve_workers(settings, host, port, workers)
    say("stopped: every request in flight was answered")


def _is_dir(source: str) -> bool:
    try:
        return Path(source).is_dir()
    except (OSError, ValueError):
        return False

