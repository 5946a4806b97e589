"""A member trained in another process: what it is sent, and the stand-ins it writes through.

A member that trains somewhere else (a Ray task; runner.scale.ray_backend) gets a `Ticket`: the plugins
directory to load, and a reference to the resolved spec, the prepared data and the member's
adaptation in Ray's object store, fetched only once the plugins are loaded (a plugin's options model
must be importable before its instances can be received; plugin files load as
`runner_plugins.<stem>` in every process). Ray serializes the objects between runner's own
processes; runner itself never writes or reads a pickle (tests/run/test_reliability.py).

In that process the member's `MemberJob` has a `RemoteStore` and a `RemoteProgress`: every store call
and progress event is sent to the driver through a `channel` (the driver's mailbox), and the driver,
the only process that opens the DuckDB file, does it and answers. A call waits for the answer, so a
checkpoint's rows are committed before the checkpoint that came before it is pruned, exactly as when
the member trains in the driver.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runner.errors import portable
from runner.plugins.registry import load_registry
from runner.store import checkpoints
from runner.train.job import PROGRESS_CALLS, STORE_CALLS, MemberJob

STEP_EVERY_S = 0.5  # step updates are sent at most this often (the last one of an epoch always)


@dataclass
class Ticket:
    """What a process needs to train one member of a run, besides a channel to the driver."""

    plugins_dir: str | None
    parts: list  # [an ObjectRef of (ResolvedSpec, PreparedData, {member: Adaptation})]: inside a list,
    # so Ray hands the task the reference and the objects come in job(), after the plugins
    run_id: str
    runs_root: str
    store_path: str
    cwd: str  # the driver's working folder: relative paths in the spec mean the same there
    verbose: bool
    watched: bool  # the driver watches every epoch (a sweep's pruner): send each one and wait

    @classmethod
    def of(cls, p, run_id: str, runs_root: Path, store_path: Path, verbose: bool, watched: bool) -> "Ticket":
        import ray

        plugins_dir = p.registry.plugins_dir
        return cls(str(Path(plugins_dir).resolve()) if plugins_dir is not None else None,
                   [ray.put((p.resolved, p.data, p.adaptations))], run_id, str(runs_root),
                   str(Path(store_path).resolve()), os.getcwd(), verbose, watched)

    def job(self, member: str, channel: Callable[[tuple], Any], post: Callable[[tuple], None]):
        """The member's runner.train.member.MemberJob in this process, writing through `channel`."""
        import ray

        if os.path.isdir(self.cwd):
            os.chdir(self.cwd)
        registry = load_registry(Path(self.plugins_dir) if self.plugins_dir else None)
        resolved, data, adaptations = ray.get(self.parts[0])
        m = next(x for x in resolved.members if x.name == member)
        say = lambda text: channel(("say", text))  # noqa: E731
        on_epoch = (lambda name, record: channel(("on_epoch", name, record))) if self.watched else None
        return MemberJob(run_id=self.run_id, member=m, resolved=resolved, data=data, registry=registry,
                         store=RemoteStore(channel, self.store_path), progress=RemoteProgress(channel, post),
                         owner=checkpoints.MemberDir(Path(self.runs_root), self.run_id, member), say=say,
                         verbose=self.verbose, on_epoch=on_epoch, adaptation=adaptations.get(member))


class RemoteStore:
    """The store's methods that training calls, each done by the driver (`channel` waits for it)."""

    def __init__(self, channel: Callable[[tuple], Any], path: str):
        self._channel = channel
        self.path = Path(path)

    def __getattr__(self, name: str):
        if name not in STORE_CALLS:
            raise AttributeError(f"a member training in another process cannot call Store.{name}")
        return lambda *args, **kwargs: self._channel(("store", name, args, kwargs))


class RemoteProgress:
    """Progress events sent to the driver's display; step counts at most every STEP_EVERY_S."""

    def __init__(self, channel: Callable[[tuple], Any], post: Callable[[tuple], None]):
        self._channel, self._post = channel, post
        self._last_step = 0.0

    def __getattr__(self, name: str):
        if name not in PROGRESS_CALLS:
            raise AttributeError(name)
        if name == "step":
            return self._step
        return lambda *args: self._channel(("progress", name, args))

    def _step(self, member: str, step: int, max_steps: int) -> None:
        now = time.monotonic()
        if now - self._last_step >= STEP_EVERY_S or step >= max_steps:
            self._last_step = now
            self._post(("progress", "step", (member, step, max_steps)))


def answer(handler: Callable[[tuple], Any], msg: tuple) -> tuple[bool, Any]:
    """(True, result) or (False, exception) of `handler(msg)`, in a form the member's process rebuilds."""
    try:
        return True, handler(msg)
    except Exception as e:  # it is raised again in the member's process
        return False, portable(e)


def unwrap(reply: tuple[bool, Any]) -> Any:
    ok, value = reply
    if not ok:
        raise value
    return value
