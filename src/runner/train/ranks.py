"""The rank primitives of one member over several processes: `torchrun --nproc_per_node N -m runner
apply SPEC` (or `accelerate launch`), Hugging Face Trainer's own DDP, with rank 0 the only writer.
Training code asks `writes()` before it writes and `agree()`s with the other ranks; the followers'
loop is runner.scale.ddp.

Every rank runs `runner apply`, but only rank 0 (the leader) plans the run, opens the store, decides
what to resume and writes checkpoints, rows and files. The other ranks (followers) wait for the leader
to tell them what to do at the two places where every rank must act together:

- `("dry_run", payload, members)`: the validation dry run takes a real optimizer step through
  Trainer, which under DDP is a collective;
- `("train", payload, member, ...)`: one member, with the resume point the leader chose; every rank
  runs `runner.train.member.train_member` with a store that discards (runner.scale.ddp), so the collectives of
  training, evaluation and prediction match, and rank 0's store callback writes each epoch.

At each epoch's end the ranks agree on whether training goes on (`agree`): a sweep's pruner runs on
the leader only, and its verdict must stop every rank at once. Predictions are gathered by Trainer
(accelerate's `gather_for_metrics`): each rank predicts every N-th batch of the length-sorted split
and the gathered batches come back in the split's order, with the padding samples that make the
shards even dropped, so the store gets each example exactly once, in order (tests/scale/test_ddp.py).

Followers never open the store; the run's folder must be on storage every node reaches (one machine:
the local disk; several: a shared filesystem), since every rank reads the checkpoints rank 0 wrote
(a resume, SWA).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner.errors import portable
from runner.plugins.registry import load_registry

_busy = [0]  # >0 while the leader is inside something the followers take part in


def world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def distributed() -> bool:
    return world_size() > 1


def leading() -> bool:
    """This process is rank 0 of several."""
    return distributed() and rank() == 0


def following() -> bool:
    return distributed() and rank() != 0


def writes() -> bool:
    """This process writes the store, checkpoints and files: one process, or rank 0 of several."""
    return rank() == 0


def init() -> None:
    """Join the process group torchrun / accelerate set up (gloo on CPUs, NCCL on GPUs)."""
    if distributed():
        import torch
        from accelerate import PartialState

        cpu = not torch.cuda.is_available()
        if cpu:  # every TrainingArguments made in this process then sets up DDP over gloo, not one process
            os.environ["ACCELERATE_USE_CPU"] = "true"
        PartialState(cpu=cpu)


def broadcast(obj):
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass
class Payload:
    """The spec and data a follower rebuilds: sent in two broadcasts, the plugins folder first (a
    plugin's options model must be imported before an instance of it can be received), then the
    objects themselves (torch.distributed serializes them; nothing is read from a file)."""

    plugins_dir: str | None
    objects: tuple  # (ResolvedSpec, PreparedData, {member: Adaptation})


def tell(msg: tuple) -> None:
    """The leader tells every follower `msg` (a no-op in one process); a Payload in it goes in two
    steps (see Payload)."""
    if leading() and msg:
        broadcast(tuple(("payload", x.plugins_dir) if isinstance(x, Payload) else x for x in msg))
        for x in msg:
            if isinstance(x, Payload):
                broadcast(x.objects)


@contextmanager
def shared(msg: tuple):
    """Tell the followers `msg`, and mark the block as one they take part in."""
    tell(msg)
    _busy[0] += 1
    try:
        yield
    finally:
        _busy[0] -= 1


def finish() -> None:
    """The leader's last word: the followers stop (skipped when they are inside a shared operation
    that failed on the leader alone: the leader exits, and torchrun stops them)."""
    if leading() and not _busy[0]:
        broadcast(("done",))


def agree(value):
    """Every rank gets the leader's `value` (what its epoch hook raised, whether the cache holds an
    adaptation...); in one process, `value` itself. An exception that could not be rebuilt in another
    process travels as a RemoteError with its message (runner.errors.portable)."""
    if not distributed():
        return value
    if leading() and isinstance(value, BaseException):
        value = portable(value)
    return broadcast(value if leading() else None)


def barrier() -> None:
    if distributed():
        import torch.distributed as dist

        dist.barrier()


def payload(resolved, data, adaptations, registry) -> Payload:
    """What a follower needs to rebuild the spec and data: the plugins folder to load, then the objects."""
    d = registry.plugins_dir
    return Payload(str(Path(d).resolve()) if d is not None else None, (resolved, data, adaptations))


_registries: dict = {}


def unpack(p: tuple):
    """(registry, resolved, data, adaptations) on a follower, from a ("payload", plugins_dir) the
    leader broadcast: the plugin modules load, then the objects are received (the leader's next
    broadcast)."""
    d = p[1]
    if d not in _registries:
        _registries[d] = load_registry(Path(d) if d else None)
    return (_registries[d], *broadcast(None))
