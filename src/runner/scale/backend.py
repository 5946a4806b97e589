"""What trains a run's members: one small interface, a local implementation, and the choice.

A `Backend` takes the members of a run not yet finished and trains each through
runner.scale.members.run_member, settling each as it ends (`settle`: how a member ended becomes
its status). `LocalBackend` trains them one after another in this process; `RayBackend`
(runner.scale.ray_backend) trains them at once as Ray tasks, with this process the only writer of
the store. `backend_for` picks the one the command line or `[compute]` asks for.
"""

from __future__ import annotations

from typing import Callable, Protocol

from runner.errors import InputError
from runner.scale.members import run_member, settle
from runner.scale.ray_backend import RayBackend


class Backend(Protocol):
    """Trains the members of a run; see the module docstring."""

    name: str  # "local" or "ray"

    def train_members(self, p, store, run_id: str, todo: list, make_job: Callable, result, say) -> bool:
        """Train the members `todo` (ResolvedMembers not yet finished) and settle each into `result`
        (runner.train.job.ApplyResult); False when the run stopped early (a sweep's pruner).
        `make_job(member)` builds the member's runner.train.job.MemberJob."""

    def close(self) -> None:
        """Release what the backend holds (a Ray instance it started)."""


class LocalBackend:
    """One member after another, in this process."""

    name = "local"

    def train_members(self, p, store, run_id: str, todo: list, make_job: Callable, result, say) -> bool:
        for m in todo:
            job = make_job(m)
            try:
                outcome = run_member(job)
            except BaseException as e:  # settle decides what ends the command and what is the member's failure
                outcome = e
            if not settle(p, store, run_id, m.name, outcome, result, say):
                return False
        return True

    def close(self) -> None:
        pass


def backend_for(p, cli_backend: str | None, cli_address: str | None, source_cli: str = "--backend") -> Backend:
    """The backend the command line or `[compute]` asks for, connected: LocalBackend, or a RayBackend
    joined to its cluster (exit 2 when Ray is missing, unreachable, or no node fits a member)."""
    compute = p.resolved.spec.compute
    name = cli_backend or compute.backend
    if name != "ray":
        if cli_address is not None:
            raise InputError(f"--address {cli_address}: joins a Ray cluster, so it needs --backend ray (or "
                             f"[compute] backend = \"ray\" in {p.spec_path})")
        return LocalBackend()
    if cli_address is not None:
        compute = compute.model_copy(update={"address": cli_address})
    source = ("--address" if cli_address is not None else source_cli) if cli_backend else f"{p.spec_path}: compute.backend"
    return RayBackend(compute, source).connect()
