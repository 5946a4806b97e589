"""The `[track]` table: the trackers a run is also logged to (runner.track), with their settings.

Not part of the spec hash: a tracker says where the numbers are shown, not how a member trains, so
adding `[track]` to the spec of a finished run logs that run instead of training a new one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from runner.spec.base import Strict, Text

TRACKERS = ("mlflow", "wandb")


class MlflowSpec(Strict):
    """`[track.mlflow]`: where MLflow's client logs (runner.track.mlflow_client)."""

    tracking_uri: Text | None = Field(
        None, min_length=1,
        description="The MLflow tracking URI (http://host:5000, sqlite:///path/mlflow.db); default: "
                    "MLFLOW_TRACKING_URI, else sqlite:///<store folder>/tracking/mlflow.db beside the store.")
    experiment: Text | None = Field(None, min_length=1, max_length=500,
                                    description="The MLflow experiment; default: the spec's name.")


class WandbSpec(Strict):
    """`[track.wandb]`: where W&B's client logs (runner.track.wandb_client)."""

    project: Text | None = Field(None, min_length=1, max_length=128,
                                 description="The W&B project; default: the spec's name.")
    entity: Text | None = Field(None, min_length=1, max_length=128,
                                description="The W&B entity (user or team); default: the one logged in.")
    mode: Literal["online", "offline"] = Field(
        "online", description="online: send as it trains; offline: write the runs to `dir` only "
                              "(`wandb sync` uploads them later).")
    dir: Text | None = Field(
        None, min_length=1, description="The folder W&B writes its run files to (relative to the working folder); "
                                        "default: WANDB_DIR, else <store folder>/tracking/wandb beside the store.")


class TrackSpec(Strict):
    """`[track]`: the trackers a run is also logged to; the store stays the source of truth."""

    to: list[Literal["mlflow", "wandb"]] = Field(
        default_factory=list,
        description="The trackers to log to: \"mlflow\" and/or \"wandb\" (pip install \"runner[mlflow]\" or "
                    "\"runner[wandb]\"); each member a run, the run a parent run. Not part of the spec hash.")
    mlflow: MlflowSpec = Field(default_factory=MlflowSpec, description="MLflow's settings.")
    wandb: WandbSpec = Field(default_factory=WandbSpec, description="W&B's settings.")

    @field_validator("to")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("name each tracker once")
        return v
