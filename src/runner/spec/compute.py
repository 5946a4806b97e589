"""The `[compute]` table: where a run's members train (runner.scale.ray_backend, runner.train.ranks)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from runner.spec.base import Strict, Text
from runner.spec.problems import LocatedError


class ComputeSpec(Strict):
    """`[compute]`: where members train (docs/how-to/scaling-out.md). Not part of the spec hash: a run
    started here continues on a Ray cluster, and the other way round."""

    backend: Literal["local", "ray"] = Field(
        "local", description="local: one member after another in this process (nothing to start); ray: every "
                             "member at once as a Ray task (pip install -e \".[ray]\")")
    address: Text | None = Field(
        None, min_length=1, description="the Ray cluster to join (auto, ray://host:10001); none starts Ray here")
    cpus_per_member: float = Field(1.0, gt=0, le=4096, description="CPUs Ray reserves for each member's task")
    gpus_per_member: float | None = Field(
        None, ge=0, le=64, description="GPUs Ray reserves for each member's task; none: 1 where the cluster has GPUs, "
                                       "else 0. Above 1, the member trains with DDP over that many GPUs")
    processes_per_member: int | None = Field(
        None, ge=1, le=64, description="DDP processes for one member under Ray (torchrun inside its task); "
                                       "none: gpus_per_member when above 1, else 1")
    max_retries: int = Field(2, ge=0, le=100, description="Ray retries of a member task whose worker died; "
                                                          "the retry resumes from the last stored epoch")

    @model_validator(mode="after")
    def _whole_gpus_for_ddp(self):
        g = self.gpus_per_member
        if g is not None and g > 1 and not float(g).is_integer():
            raise LocatedError("compute.gpus_per_member",
                               f"{g:g} GPUs cannot be split into DDP processes; give a whole number above 1")
        return self
