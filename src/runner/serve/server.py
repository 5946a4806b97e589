"""Running the app under uvicorn, with the drain SIGTERM asks for.

On SIGTERM (or Ctrl-C) uvicorn stops listening, so new connections are refused, closes idle
keep-alive connections, and waits up to `drain_s` for the requests in flight to be answered; then
the app's lifespan stops the batcher (which answers what it had queued) and `serve` returns, so the
command exits 0. uvicorn re-raises the signal it caught once it has shut down (for a default handler
to end the process); the handlers installed here take it instead, so the exit is the command's own.

With `workers` > 1, uvicorn starts that many processes, each loading the models itself from the
settings it finds in the environment (`app_from_environment`); torch's threads are shared out among
them.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager

from runner.errors import InputError

SETTINGS_ENV = "RUNNER_SERVE_SETTINGS"  # how the worker processes learn what to load


def check_bind(host: str, port: int) -> None:
    """InputError naming --host/--port when the address cannot be listened on (before loading anything)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise InputError(f"--host {host!r}: not an address this machine can listen on ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise InputError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); another server may "
                             "hold it: pick another port") from None


@contextmanager
def _signals_taken():
    """While uvicorn runs, and after: SIGTERM and SIGINT do nothing but what uvicorn makes of them."""
    before = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def serve(app, host: str, port: int, drain_s: float = 30.0, log_level: str = "warning") -> None:
    """Serve `app` until SIGTERM or Ctrl-C, then drain (module docstring)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=drain_s,
                            access_log=False, lifespan="on")
    with _signals_taken():
        uvicorn.Server(config).run()


def serve_workers(settings: dict, host: str, port: int, workers: int, drain_s: float = 30.0,
                  log_level: str = "warning") -> None:
    """`workers` processes, each building its app with `app_from_environment`."""
    import uvicorn

    os.environ[SETTINGS_ENV] = json.dumps(settings)
    with _signals_taken():
        uvicorn.run("runner.serve.load:app_from_environment", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, timeout_graceful_shutdown=drain_s, access_log=False)
