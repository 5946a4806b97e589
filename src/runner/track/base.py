"""What the trackers share: the run a tracker keeps (`TrackedRun`), how runner names and finds it
(`RunKey`), the folder beside the store their local files go to, and the spec flattened to params."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

TRACKING = "tracking"  # <store folder>/tracking/: the trackers' local files, beside runs/
PARAM_CHARS = 500  # a longer value (a list of special tokens) is cut: MLflow takes at most 6000, W&B's UI less


def tracking_dir(store_path: str | Path) -> Path:
    """`tracking/` beside the store: MLflow's default database and artifacts, W&B's run files and caches."""
    return Path(store_path).resolve().parent / TRACKING


_SET: dict[str, str] = {}  # what env_default set: a later store in the same process (a notebook) sets its own


def env_default(variable: str, value: str) -> None:
    """Set an environment variable that a tracker's client reads, unless the user set it."""
    current = os.environ.get(variable)
    if not current or current == _SET.get(variable):
        os.environ[variable] = _SET[variable] = value


@dataclass
class RunKey:
    """A tracker run of a runner run (`member` None: the parent run) and what it is tagged with."""

    run_id: str
    member: str | None
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return "member" if self.member is not None else "run"

    @property
    def name(self) -> str:
        return self.member if self.member is not None else self.run_id


class TrackedRun(Protocol):
    """One run of a tracker, open for logging."""

    def log(self, values: dict[str, float], step: int | None) -> None:
        """Metrics at `step` (an epoch), or final numbers (None)."""

    def artifacts(self, files: list[Path]) -> None:
        """Files attached to the run."""

    def end(self, status: str) -> None:
        """Close it: `finished`, `failed` or anything else (killed)."""


class Tracker(Protocol):
    """A tracker's client for one spec's runs (runner.track.mlflow_client, runner.track.wandb_client)."""

    name: str

    def find(self, key: RunKey) -> bool:
        """Whether the tracker already has the run of `key` (found by its tags)."""

    def open(self, key: RunKey, parent: TrackedRun | None) -> tuple[TrackedRun, bool]:
        """The tracker run of `key`, found by its tags or made (with `key.params`); True when it was found."""

    def close(self) -> None:
        """Release the client."""


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A spec (or part of one) as dotted keys and string values: `train.learning_rate`, `loss.gamma`;
    lists of tables by position (`members.0.name`), lists of values as JSON."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}"))
    elif prefix:
        text = value if isinstance(value, str) else json.dumps(value)
        out[prefix] = text if len(text) <= PARAM_CHARS else text[: PARAM_CHARS - 3] + "..."
    return out
