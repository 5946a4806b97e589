"""A command's trackers (`Tracking`), one runner run's tracker runs (`RunTracking`), and the store the
driver writes through while they log (`TrackedStore`).

Failures: a tracker that raises (a server that went away, a full disk) is reported once, as one
warning line, and not called again during the command; training goes on, since the store holds every
number. What the tracker missed can be logged from the store later: a tracker run that is not there
yet (another experiment or project) gets a finished run's epochs and results (`RunTracking.backfill`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from runner.track.base import RunKey, TrackedRun, Tracker, flatten


def _make(name: str, settings, store_path: Path, spec_name: str) -> Tracker:
    if name == "mlflow":
        from runner.track.mlflow_client import MlflowTracker  # optional dependency: mlflow

        return MlflowTracker(settings.mlflow, store_path, spec_name)
    from runner.track.wandb_client import WandbTracker  # optional dependency: wandb

    return WandbTracker(settings.wandb, store_path, spec_name)


def run_tags(store, run_id: str, store_path: Path) -> dict[str, str]:
    """What leads from a tracker run back to the store, and finds it again."""
    record = store.run(run_id)
    return {"runner.run_id": run_id, "runner.spec_hash": str(record.spec_hash),
            "runner.dataset_id": str(record.dataset_id), "runner.store": str(store_path)}


class Tracking:
    """The trackers of `[track]` for one command: `run(store, run_id)` gives a run's tracker runs."""

    def __init__(self, settings, store_path: str | Path, spec_name: str, say: Callable[[str], None] = print):
        self.say, self.broken = say, set()
        self.store_path = Path(store_path).resolve()
        self.trackers: list[Tracker] = []
        for name in settings.to:
            made = self.guard(name, "connecting", lambda n=name: _make(n, settings, self.store_path, spec_name))
            if made is not None:
                self.trackers.append(made)
        self.runs: dict[str, RunTracking] = {}

    def guard(self, name: str, what: str, call: Callable[[], Any]) -> Any:
        """`call()`, or None after the tracker's first failure (one warning line; see the module docstring)."""
        if name in self.broken:
            return None
        try:
            return call()
        except Exception as e:  # any failure of a tracker's client: the store stays the source of truth
            self.broken.add(name)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            self.say(f"warning: track.{name}: {what} failed ({type(e).__name__}: {first}); nothing more is logged "
                     f"to {name} by this command, and training goes on: the store holds every number.")
            return None

    def logged(self, store, run_id: str) -> bool:
        """Whether every tracker already has the run's parent run (a re-run of a finished spec: nothing to log)."""
        key = RunKey(run_id, None, run_tags(store, run_id, self.store_path))
        return all(self.guard(t.name, "finding the run", lambda t=t: t.find(key)) for t in self.trackers)

    def run(self, store, run_id: str) -> "RunTracking":
        if run_id not in self.runs:
            self.runs[run_id] = RunTracking(self, store, run_id)
        return self.runs[run_id]

    def close(self, status: str = "killed") -> None:
        """End every tracker run still open (a command stopped by an error or Ctrl-C: `killed`)."""
        for run in self.runs.values():
            run.end(status)
        for t in self.trackers:
            self.guard(t.name, "closing", t.close)


class RunTracking:
    """One runner run's tracker runs: the parent at once, a member's when it starts."""

    def __init__(self, tracking: Tracking, store, run_id: str):
        self.tracking, self.store, self.run_id = tracking, store, run_id
        record = store.run(run_id)
        spec = dict(record.spec)
        self.members = {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in spec.pop("members", [])}
        self.tags = run_tags(store, run_id, tracking.store_path)
        params = flatten(spec)
        for name, m in self.members.items():
            params.update(flatten(m, f"members.{name}"))
        self.parents: dict[str, tuple[TrackedRun, bool]] = {}  # tracker -> (run, found an existing one)
        self.children: dict[tuple[str, str], TrackedRun] = {}
        self.ended = False
        for t in tracking.trackers:
            opened = tracking.guard(t.name, "opening the run", lambda t=t: t.open(
                RunKey(run_id, None, self.tags, params), None))
            if opened is not None:
                self.parents[t.name] = opened

    def _each(self, what: str, call: Callable[[Tracker, TrackedRun], Any]) -> None:
        for t in self.tracking.trackers:
            if t.name in self.parents:
                self.tracking.guard(t.name, what, lambda t=t: call(t, self.parents[t.name][0]))

    def member_started(self, member: str) -> None:
        self._each(f"starting member {member}", lambda t, _: self._child(t, member))

    def _child(self, t: Tracker, member: str) -> TrackedRun:
        """The member's run of tracker `t`, opened (found or made) the first time it is asked for."""
        if (t.name, member) not in self.children:
            key = RunKey(self.run_id, member, self.tags, flatten(self.members.get(member, {})))
            self.children[(t.name, member)] = t.open(key, self.parents[t.name][0])[0]
        return self.children[(t.name, member)]

    def epoch(self, member: str, epoch: int) -> None:
        """Log a stored epoch of `member`, as the store holds it."""
        stored = next((e for e in self.store.member_epochs(self.run_id, member) if e.epoch == epoch), None)
        if stored is None:
            return
        values = {k: v for k, v in stored.metrics.items() if v is not None and math.isfinite(v)}
        self._each(f"logging epoch {epoch} of {member}", lambda t, _: self._child(t, member).log(values, epoch))

    def member_ended(self, member: str, status: str) -> None:
        def end(t: Tracker, _) -> None:
            child = self.children.pop((t.name, member), None)
            if child is not None:
                child.end(status)

        self._each(f"ending member {member}", end)

    def backfill(self) -> None:
        """A run that finished before a tracker was added: log every finished member's epochs from the
        store to the trackers that did not have the run (the others are left alone from here on)."""
        self.parents = {name: opened for name, opened in self.parents.items() if not opened[1]}
        if self.parents:
            self.tracking.say(f"Run {self.run_id}: logging its stored epochs and results to "
                              f"{' and '.join(self.parents)}, where it is not yet.")
        for m in self.store.run(self.run_id).members:
            if m.status != "finished":
                continue
            self.member_started(m.name)
            for e in self.store.member_epochs(self.run_id, m.name):
                self.epoch(m.name, e.epoch)
            self.member_ended(m.name, "finished")

    def results(self, build: Callable[[], tuple[dict[str, float], list[Path]]]) -> None:
        """The parent's metrics and artifacts, from `build()` (runner.api: the compare table, the report)."""
        if not self.parents:
            return
        built = self.tracking.guard(next(iter(self.parents)), "building the results", build)
        if built is None:
            return
        metrics, files = built
        self._each("logging the results", lambda t, run: (run.log(metrics, None), run.artifacts(files)))

    def end(self, status: str) -> None:
        if self.ended:
            return
        self.ended = True
        for _, member in list(self.children):
            self.member_ended(member, status)
        self._each("ending the run", lambda t, run: run.end(status))


class TrackedStore:
    """The store, with each member start, stored epoch and member end also sent to the run's trackers.

    The driver trains through it (runner.run.training), so members trained here and members trained
    in Ray tasks (whose store calls the driver makes: runner.scale.ray_backend) are logged alike."""

    def __init__(self, store, tracked: RunTracking):
        self._store, self._tracked = store, tracked

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def start_member(self, run_id: str, member: str, *args, **kwargs) -> None:
        self._store.start_member(run_id, member, *args, **kwargs)
        if run_id == self._tracked.run_id:
            self._tracked.member_started(member)

    def log_checkpoint(self, run_id: str, member: str, checkpoint: str, epoch: int | None, *args, **kwargs) -> int:
        n = self._store.log_checkpoint(run_id, member, checkpoint, epoch, *args, **kwargs)
        kind = kwargs.get("kind", args[2] if len(args) > 2 else "member")
        if run_id == self._tracked.run_id and kind == "member" and checkpoint == f"epoch-{epoch}":
            self._tracked.epoch(member, epoch)
        return n

    def finish_member(self, run_id: str, member: str, status: str, *args, **kwargs) -> None:
        self._store.finish_member(run_id, member, status, *args, **kwargs)
        if run_id == self._tracked.run_id:
            self._tracked.member_ended(member, status)
