"""MLflow through its own client (`MlflowClient`, no global active run, so several members can log at
once): a parent run per runner run, a nested run per member (the `mlflow.parentRunId` tag).

Where it logs: `[track.mlflow] tracking_uri`, else MLFLOW_TRACKING_URI, else a SQLite database beside
the store (`tracking/mlflow.db`, artifacts in `tracking/mlflow-artifacts/`): nothing in the working
folder, nothing under $HOME. MLflow's telemetry, which keeps an id under ~/.config and reports usage,
is off unless the user set MLFLOW_DISABLE_TELEMETRY; a request that fails is retried twice, not seven
times with back-off, so an unreachable server costs seconds, not minutes (each unless set).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from runner.track.base import RunKey, env_default, tracking_dir

STATUS = {"finished": "FINISHED", "failed": "FAILED"}  # anything else: KILLED
BATCH = 100  # MLflow takes at most 100 params and 1000 metrics in one log_batch


def tracking_uri(settings, store_path: Path) -> str:
    import os

    return settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
        f"sqlite:///{tracking_dir(store_path) / 'mlflow.db'}"


def local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


class MlflowTracker:
    name = "mlflow"

    def __init__(self, settings, store_path: Path, spec_name: str):
        env_default("MLFLOW_DISABLE_TELEMETRY", "true")
        env_default("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        env_default("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        from mlflow.tracking import MlflowClient  # optional dependency: mlflow

        # "Creating initial MLflow database tables..." between runner's own lines: its warnings stay
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.uri = tracking_uri(settings, store_path)
        if self.uri.startswith("sqlite:"):
            tracking_dir(store_path).mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        name = settings.experiment or spec_name
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:  # a local database keeps its artifacts beside it, not in ./mlruns
            where = (tracking_dir(store_path) / "mlflow-artifacts").as_uri() if local(self.uri) else None
            self.experiment_id = self.client.create_experiment(name, artifact_location=where)

    def _found(self, key: RunKey) -> list:
        query = f"tags.`runner.run_id` = '{key.run_id}' AND tags.`runner.role` = '{key.role}'"
        if key.member is not None:
            query += f" AND tags.`runner.member` = '{key.member}'"
        return [r for r in self.client.search_runs([self.experiment_id], query, max_results=50)
                if r.data.tags.get("runner.store") == key.tags["runner.store"]]

    def find(self, key: RunKey) -> bool:
        return bool(self._found(key))

    def open(self, key: RunKey, parent) -> tuple["MlflowRun", bool]:
        found = self._found(key)
        if found:
            return MlflowRun(self.client, found[0].info.run_id), True  # ended again by runner.track
        tags = {**key.tags, "runner.role": key.role, **({"runner.member": key.member} if key.member else {})}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.run_id
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=key.name)
        made = MlflowRun(self.client, run.info.run_id)
        made.params(key.params)
        return made, False

    def close(self) -> None:
        pass


class MlflowRun:
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param  # optional dependency: mlflow

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + BATCH])

    def log(self, values: dict[str, float], step: int | None) -> None:
        from mlflow.entities import Metric  # optional dependency: mlflow

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in values.items()]
        for i in range(0, len(items), 10 * BATCH):
            self.client.log_batch(self.run_id, metrics=items[i:i + 10 * BATCH])

    def artifacts(self, files: list[Path]) -> None:
        for f in files:
            self.client.log_artifact(self.run_id, str(f))

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, STATUS.get(status, "KILLED"))
