"""What `runner validate` and `apply` check of `[track]` before anything is written (exit 2): that each
tracker's client is installed, that an MLflow server named by an http(s) URI answers, and that W&B
online has an API key to send with (else its client would ask for one in the middle of training).
Anything else (a W&B server that does not answer, a key it refuses) shows when the run logs, as a warning."""

from __future__ import annotations

import importlib.util
import netrc
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from runner.errors import SpecError
from runner.track.mlflow_client import tracking_uri

ANSWER_S = 5.0  # an MLflow server that does not answer /health in this time is unreachable


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules, or a broken install
        return False


def answers(uri: str) -> str | None:
    """None when the server at `uri` answers HTTP (any status), else why not."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=ANSWER_S):
            return None
    except urllib.error.HTTPError:  # it answered, with an error: reachable, the client will say more
        return None
    except (urllib.error.URLError, OSError, ValueError) as e:
        return str(getattr(e, "reason", e))


def check(spec_path, settings, store_path: str | Path) -> None:
    """Raise a SpecError naming the `[track]` key when a tracker cannot be used (see the module docstring)."""
    problems = []
    for name in settings.to:
        if not installed(name):
            problems.append(("track.to", f"{name!r} logs through its own client, which is not installed here: "
                                         f"pip install \"runner[{name}]\" (or remove {name!r} from track.to)"))
    if "mlflow" in settings.to:
        uri = tracking_uri(settings.mlflow, Path(store_path))
        if uri.startswith(("http://", "https://")):
            why = answers(uri)
            if why is not None:
                source = "" if settings.mlflow.tracking_uri else " (from MLFLOW_TRACKING_URI)"
                problems.append(("track.mlflow.tracking_uri", f"the MLflow server {uri}{source} does not answer "
                                                              f"({why}); start it, or correct the URI"))
    if "wandb" in settings.to and settings.wandb.mode == "online" and not wandb_key_known():
        problems.append(("track.wandb.mode", "W&B online needs an API key, and none is set: set WANDB_API_KEY, or run "
                                             "`wandb login` (it keeps the key in ~/.netrc); or set mode = \"offline\""))
    if problems:
        raise SpecError(spec_path, problems)


def wandb_key_known() -> bool:
    """Whether W&B's client has a key: WANDB_API_KEY, or an entry for its host in the netrc file it reads."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urllib.parse.urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False
