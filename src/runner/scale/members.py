"""A run's member loop, whatever executes it: resuming a member, training it, and settling how it ended.

`run_member` is what trains one member wherever it runs (this process, a Ray task, every rank of a
DDP group): it looks at what the store already holds for the member, cleans the folder for a
resume (runner.store.checkpoints), records the member as running, and trains it (runner.train.member). Because
the resume is decided there, from the store, a Ray task that Ray retries after its worker died
resumes from the last stored epoch by itself, exactly as a re-run of `runner apply` does.

`settle` is the one place that turns how a member ended (its selected epoch, or the exception it
raised) into the store's member and run status, for every backend. `train_members` runs the loop:
one member after another here, or every member at once on a Ray cluster (runner.scale.ray_backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.core.failures import DISK_FULL
from runner.core.records import EpochRecord, MemberHistory
from runner.core.selection import pick_all
from runner.errors import DiskFullError, StoreError, TrainingError, TrialPruned
from runner.scale import ddp
from runner.store import checkpoints
from runner.train import ranks
from runner.train.member import train_member


@dataclass
class MemberDone:
    """What a member that trained to the end hands back: its selected epoch and every epoch's record."""

    selected: int
    history: list[EpochRecord] = field(default_factory=list)


def resume_point(job) -> None:
    """Before a member trains: if the store has rows of it (an interrupted earlier attempt), keep the
    latest epoch both stored and checkpointed, drop what came after it, and set `job.resume_from` and
    `job.history` to continue from there; then mark the member running."""
    store, run_id, m = job.store, job.run_id, job.member
    if any(row["member"] == m.name for row in store.members(run_id)):
        last, resume_from = checkpoints.clean_for_resume(job.owner, set(store.stored_epochs(run_id, m.name)))
        store.truncate_member(run_id, m.name, last)
        job.resume_from, job.history = resume_from, {}
        if resume_from is not None:
            job.history = {e.epoch: e for e in store.member_epochs(run_id, m.name)}
            job.say(f"{m.name}: resuming after epoch {last}.")
    store.start_member(run_id, m.name, m.backbone, m.model, m.seed, m.options_dict())


def run_member(job) -> MemberDone:
    """Resume (runner.scale.members.resume_point) and train one member (runner.train.member.train_member); under
    torchrun, every rank trains it from the point rank 0 chose (runner.train.ranks)."""
    resume_point(job)
    with ranks.shared(ddp.member_message(job)):
        selected = train_member(job)
    return MemberDone(selected, list(job.history.values()))


def settle(p, store, run_id: str, member: str, outcome: MemberDone | BaseException, result, say) -> bool:
    """Record how `member` ended in the store and in `result` (runner.run.apply.ApplyResult).

    Returns False when the run must stop here (a sweep's pruner stopped the trial); raises what must
    end the command (the store itself failing, a full disk, a bug), after recording it."""
    spec = p.resolved.spec
    if isinstance(outcome, MemberDone):
        store.finish_member(run_id, member, "finished", selected_checkpoint=f"epoch-{outcome.selected}")
        history = MemberHistory.of(member, outcome.history, has_swa=bool(spec.swa.k))
        store.log_selections(run_id, member, pick_all(p.registry, history))
        checkpoints.finish(checkpoints.MemberDir(checkpoints.runs_root(store), run_id, member))
        p.registry.hook.on_member_end(run_id=run_id, member=member, status="finished", selected_epoch=outcome.selected)
        return True
    e = outcome
    if isinstance(e, TrialPruned):  # a sweep's pruner stopped the trial: its epochs stay stored
        store.finish_member(run_id, member, "pruned", error=str(e))
        store.set_run_status(run_id, "pruned", error=f"{member}: {e}")
        result.status = "pruned"
        return False
    if isinstance(e, TrainingError):
        member_failed(p, store, run_id, member, str(e), result)
        say(f"{member}: failed: {e}")
        return True
    if isinstance(e, StoreError) or not isinstance(e, Exception) or (isinstance(e, OSError)
                                                                      and e.errno not in DISK_FULL):
        # The store stayed locked past the timeout, Ctrl-C, or the file system failed: the member stays
        # 'running' on disk and in the store, and the same `runner apply` resumes it from its last
        # stored epoch.
        raise e
    if isinstance(e, OSError):  # the disk is full
        where = e.filename or checkpoints.MemberDir(checkpoints.runs_root(store), run_id, member).path
        msg = (f"disk full (or file size limit reached) while writing {where}; the epochs stored so far "
               f"are kept; free space and re-run `runner apply` to resume")
        member_failed(p, store, run_id, member, msg, result, run_failed=True)
        raise DiskFullError(f"member {member}: {msg}") from e
    # A bug (in runner or a plugin): record it against the member and the run; the CLI reports it as
    # an internal error with the traceback in the run's log
    member_failed(p, store, run_id, member, f"{type(e).__name__}: {e}", result, run_failed=True)
    raise e


def member_failed(p, store, run_id: str, member: str, error: str, result, run_failed: bool = False) -> None:
    result.failed[member] = error
    try:
        store.finish_member(run_id, member, "failed", error=error)
        if run_failed:
            store.set_run_status(run_id, "failed", error=f"{member}: {error}")
    except StoreError:
        pass  # the store itself is what failed; the member stays 'running' and a re-run resumes it
    p.registry.hook.on_member_end(run_id=run_id, member=member, status="failed", selected_epoch=None)
