"""W&B through its own client: a run per member and one for the runner run, all in the W&B group named
by the run id (job types `member` and `run`).

W&B has no search in offline mode, so a tracker run's W&B id is derived from the store, the project and
the run (and member): a re-run resumes the same W&B id (`resume="allow"`) instead of making a run. Its files
go to `[track.wandb] dir`, else WANDB_DIR, else `tracking/wandb/` beside the store; its cache, config,
data and artifact folders (by default under ~/.cache, ~/.config and ~/.local) there too unless the
user set them: nothing under $HOME.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from runner.track.base import RunKey, env_default, tracking_dir

HOME_DIRS = {"WANDB_CACHE_DIR": "cache", "WANDB_CONFIG_DIR": "config", "WANDB_DATA_DIR": "data",
             "WANDB_ARTIFACT_DIR": "artifacts"}


def wandb_dir(settings, store_path: Path) -> Path:
    return Path(settings.dir or os.environ.get("WANDB_DIR") or tracking_dir(store_path) / "wandb").resolve()


class WandbTracker:
    name = "wandb"

    def __init__(self, settings, store_path: Path, spec_name: str):
        self.settings, self.project = settings, settings.project or spec_name
        self.dir = wandb_dir(settings, store_path)
        for variable, sub in HOME_DIRS.items():
            env_default(variable, str(self.dir / sub))
        self.dir.mkdir(parents=True, exist_ok=True)
        import wandb  # optional dependency: wandb

        self.wandb = wandb

    def _id(self, key: RunKey) -> str:
        parts = [key.tags["runner.store"], self.project, self.settings.entity or "", key.run_id, key.member or ""]
        return "r" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]

    def find(self, key: RunKey) -> bool:
        """Only offline runs can be found (their folders); online, a re-run resumes the same W&B id, and W&B
        keeps the first value logged at each step."""
        return self.settings.mode == "offline" and any((self.dir / "wandb").glob(f"offline-run-*-{self._id(key)}"))

    def open(self, key: RunKey, parent) -> tuple["WandbRun", bool]:
        found = self.find(key)
        wandb = self.wandb
        settings = wandb.Settings(reinit="create_new", silent=True, console="off", x_disable_stats=True)
        run = wandb.init(id=self._id(key), resume="allow", project=self.project, entity=self.settings.entity,
                         group=key.run_id, job_type=key.role, name=key.name, tags=[key.run_id],
                         config={**key.tags, **key.params}, mode=self.settings.mode, dir=str(self.dir),
                         settings=settings)
        return WandbRun(wandb, run), found

    def close(self) -> None:
        pass


class WandbRun:
    def __init__(self, wandb, run):
        self.wandb, self.run = wandb, run

    def log(self, values: dict[str, float], step: int | None) -> None:
        if step is None:  # final numbers: the run's summary
            self.run.summary.update(values)
        else:
            self.run.log(values, step=step)

    def artifacts(self, files: list[Path]) -> None:
        artifact = self.wandb.Artifact(f"{self.run.group}-results", type="runner-results")
        for f in files:
            artifact.add_file(str(f))
        self.run.log_artifact(artifact)

    def end(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)
