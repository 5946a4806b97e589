"""`torchrun --nproc_per_node N -m runner apply SPEC`: the followers' side of one member over several
processes (the rank primitives are in runner.train.ranks).

Rank 0 (the leader) plans the run, opens the store and decides what to resume; every other rank
(a follower) runs `follow`: it waits for the leader's messages and does its part of each shared
operation, the dry run and the training of one member, with a store that discards (`NullStore`), so
the collectives of training, evaluation and prediction match while rank 0's callback writes.
"""

from __future__ import annotations

from pathlib import Path

from runner.errors import RunnerError, TrialPruned
from runner.store.checkpoints import MemberDir
from runner.train import ranks
from runner.train.dryrun import dry_run
from runner.train.job import STORE_CALLS, MemberJob
from runner.train.member import train_member


class NullStore:
    """A follower's store: training calls it as on rank 0, and nothing is written."""

    def __init__(self, path: str):
        self.path = Path(path)

    def __getattr__(self, name: str):
        if name not in STORE_CALLS:
            raise AttributeError(f"a DDP follower does not call Store.{name}")
        return lambda *args, **kwargs: None


def follow() -> None:
    """A follower's whole `runner apply`: do what the leader says until it is done."""
    while True:
        msg = ranks.broadcast(None)
        kind = msg[0]
        if kind == "done":
            return
        try:
            if kind == "dry_run":
                registry, resolved, data, _ = ranks.unpack(msg[1])
                dry_run(resolved, registry, data, [m for m in resolved.members if m.name in msg[2]])
            elif kind == "train":
                _, pay, member, run_id, runs_root, store_path, resume_from, history = msg
                registry, resolved, data, adaptations = ranks.unpack(pay)
                m = next(x for x in resolved.members if x.name == member)
                job = MemberJob(run_id=run_id, member=m, resolved=resolved, data=data, registry=registry,
                                store=NullStore(store_path), owner=MemberDir(Path(runs_root), run_id, member),
                                resume_from=resume_from, history=history, say=lambda text: None,
                                adaptation=adaptations.get(member))
                train_member(job)
        except (RunnerError, TrialPruned):
            pass  # the leader met the same, and says what happened; the next message follows


def member_message(job) -> tuple:
    """What the leader tells the followers before it trains `job`'s member: train it too, from the
    same resume point (a no-op message in one process)."""
    if not ranks.leading():
        return ()
    adaptations = {job.member.name: job.adaptation} if job.adaptation else {}
    return ("train", ranks.payload(job.resolved, job.data, adaptations, job.registry), job.member.name, job.run_id,
            str(job.owner.runs_root), str(job.store.path), job.resume_from, dict(job.history))
