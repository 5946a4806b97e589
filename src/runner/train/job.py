"""The records training moves around: a run's `Plan` (the checked spec, its registry, data and
adaptations), one `MemberJob` per member (what training one member needs, wherever it runs), and
`ApplyResult` (what applying a run came to). Also what a member may call on its store and progress
(`STORE_CALLS`, `PROGRESS_CALLS`: the whole surface a member training in another process forwards),
and `write_member_info`, the `runner.json` beside every checkpoint runner ships."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from runner.core.progress import TrainingProgress
from runner.core.records import EpochRecord
from runner.data.prepare import PreparedData
from runner.plugins.registry import Registry
from runner.spec import ResolvedMember, ResolvedSpec
from runner.store import Store, checkpoints
from runner.train import tokenizer_files
from runner.train.backbones import write_runner_json

# What training calls on a member's store (runner.scale.members, train.callback, train.swa, train.adapt):
# the only methods a member training in another process may call. Anything else is a bug to find in the
# tests, not a call to forward.
STORE_CALLS = frozenset({
    "members", "stored_epochs", "member_epochs", "truncate_member", "start_member", "log_checkpoint",
    "set_swa_epochs", "log_adaptation", "set_member_adapt",
})
PROGRESS_CALLS = frozenset({"adapt_started", "adapt_epoch", "member_started", "step", "epoch_done", "member_done"})


@dataclass
class Plan:
    """A validated spec with its data, ready to train."""

    spec_path: Path
    registry: Registry
    resolved: ResolvedSpec
    data: PreparedData
    adaptations: dict = field(default_factory=dict)  # member -> runner.train.adapt.Adaptation ([adapt])
    checked: Any = None  # the dry run's runner.train.dryrun.DryRunReport, once it ran (validate)

    @property
    def spec_hash(self) -> str:
        return self.resolved.spec_hash()


@dataclass
class ApplyResult:
    run_id: str | None
    status: str  # finished | failed | pruned | up-to-date | follower
    failed: dict[str, str] = field(default_factory=dict)
    refit: "ApplyResult | None" = None  # the refit's result, when [refit] strategy is set
    replicas: list = field(default_factory=list)  # `repeats = N`: replicas 1 .. N-1 (runner.run.repeats)


@dataclass
class MemberJob:
    """Everything needed to train one member of a run."""

    run_id: str
    member: ResolvedMember
    resolved: ResolvedSpec
    data: PreparedData
    registry: Registry
    store: Store
    owner: checkpoints.MemberDir
    progress: TrainingProgress | None = None
    resume_from: Path | None = None
    history: dict[int, EpochRecord] = field(default_factory=dict)
    say: Callable[[str], None] = print
    verbose: bool = False
    on_epoch: Callable[[str, EpochRecord], None] | None = None  # after each stored epoch (a sweep's pruner)
    adaptation: Any = None  # runner.train.adapt.Adaptation: adapt the encoder first ([adapt]), or None


def write_member_info(job: MemberJob, directory: Path) -> None:
    """runner.json: what `load_checkpoint` needs to rebuild this member without the spec; and the
    tokenizer files set to truncate where runner does (runner.train.tokenizer_files)."""
    backbone = job.registry.backbone(job.member.backbone)
    write_runner_json(directory, job.member.backbone, job.member.options_dict(), job.data.label_names,
                      job.resolved.spec.data.max_length, job.member.model, plugin=backbone.plugin,
                      origin=backbone.origin)
    tokenizer_files.fit_to_max_length(directory, job.resolved.spec.data.max_length)
