"""`--backend ray`: the members of a run trained at once as Ray tasks, this process the only writer.

Ray is an optional extra (`pip install -e ".[ray]"`); nothing here is imported unless a spec or the
command line asks for it. How it works:

- `RayBackend.connect` joins the cluster at `[compute] address` / `--address` (`auto`, `ray://...`),
  or starts Ray on this machine, and checks before anything is written that some node can hold one
  member (`cpus_per_member`, `gpus_per_member`): a task that fits nowhere would wait forever.
- Each member not yet finished becomes one task with those resources (`runner.scale.remote.Ticket`: the
  resolved spec, the data and its adaptation). Ray places the tasks across the cluster.
- The task trains through `runner.scale.members.run_member`, as the local loop does, but its store and
  progress are stand-ins (runner.scale.remote) whose every call goes to a `Mailbox` actor; this process
  takes the calls from it, does them on the real store (the same one-transaction-per-epoch writes)
  and answers. No task ever opens the DuckDB file.
- A worker that dies (killed, out of memory, node lost) is retried by Ray (`[compute] max_retries`);
  the retried task finds the member's stored epochs through the same calls and resumes from the last
  one whose checkpoint is on disk, deleting what came after it, so no row is lost or stored twice.
- Checkpoints go to runs/ beside the store: on a cluster, the store's folder must be on storage
  every node mounts at the same path (docs/how-to/scaling-out.md).

A member over several GPUs (`gpus_per_member > 1`) runs torchrun inside its task (runner.train.ranks).
"""

from __future__ import annotations

import os
import uuid

from runner.core.quiet import quiet_libraries
from runner.errors import InputError, TrainingError
from runner.scale.members import run_member, settle
from runner.scale.remote import Ticket, answer, unwrap
from runner.scale.torchrun_task import die_with_parent
from runner.store.checkpoints import runs_root
from runner.train.job import PROGRESS_CALLS, STORE_CALLS

TAKE_TIMEOUT_S = 0.2  # how long one poll of the mailbox waits for a message
NAMESPACE = "runner"  # the Ray namespace of the runs' mailboxes


def require_ray(source: str):
    """The `ray` module, or exit 2 naming where Ray was asked for."""
    try:
        import ray
    except ImportError:
        raise InputError(f"{source}: the ray backend needs Ray, which is not installed; "
                         "pip install -e \".[ray]\" (or pip install \"ray>=2.40\")") from None
    return ray


def _mailbox_class():
    import asyncio
    import itertools

    import ray

    @ray.remote(num_cpus=0, max_concurrency=1000)
    class Mailbox:
        """Messages from a run's member tasks to the driver; `call` waits for the driver's answer."""

        def __init__(self):
            self._inbox: asyncio.Queue | None = None
            self._waiting: dict[int, asyncio.Future] = {}
            self._ids = itertools.count()
            self._kept: dict[str, object] = {}

        async def keep(self, key: str, value):
            """Hold `value` for another process of the run (a task's torchrun ranks: runner.scale.torchrun_task)."""
            self._kept[key] = value

        async def kept(self, key: str):
            return self._kept.pop(key, None)

        def _queue(self) -> asyncio.Queue:
            if self._inbox is None:
                self._inbox = asyncio.Queue()
            return self._inbox

        async def call(self, msg):
            i = next(self._ids)
            fut = asyncio.get_running_loop().create_future()
            self._waiting[i] = fut
            await self._queue().put((i, msg))
            return await fut

        async def post(self, msg):
            await self._queue().put((None, msg))

        async def take(self, timeout: float, limit: int = 256):
            q = self._queue()
            try:
                first = await asyncio.wait_for(q.get(), timeout) if timeout > 0 else q.get_nowait()
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                return []
            out = [first]
            while not q.empty() and len(out) < limit:
                out.append(q.get_nowait())
            return out

        async def answer(self, i: int, reply):
            fut = self._waiting.pop(i, None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    return Mailbox


def _member_task(ticket: Ticket, member: str, mailbox, threads: int, processes: int = 1, mailbox_name: str = ""):
    """One member, in a Ray worker: train it through the mailbox; its runner.scale.members.MemberDone.
    With `processes` > 1, torchrun on this node trains it over that many ranks (runner.scale.torchrun_task)."""
    import ray
    import torch

    if processes > 1:
        return _over_processes(ticket, member, mailbox, mailbox_name, threads, processes)
    quiet_libraries()
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, threads))

    def channel(msg):
        return unwrap(ray.get(mailbox.call.remote(msg)))

    def post(msg):
        mailbox.post.remote(msg)

    return run_member(ticket.job(member, channel, post))


def _over_processes(ticket: Ticket, member: str, mailbox, mailbox_name: str, threads: int, processes: int):
    """torchrun with `processes` ranks on this node (the GPUs Ray gave the task are CUDA_VISIBLE_DEVICES).

    The ranks get the ticket, and rank 0 hands back the outcome, through the run's mailbox (`keep`,
    `kept`, under a key made for this attempt); the task folder holds only where to find it, as JSON."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import ray

    key = f"{member}:{uuid.uuid4().hex}"
    ray.get(mailbox.keep.remote(f"{key}:ticket", ticket))
    address = ray.get_runtime_context().gcs_address
    with tempfile.TemporaryDirectory(prefix="runner-ddp-") as d:
        Path(d, "task.json").write_text(json.dumps({"member": member, "mailbox": mailbox_name, "namespace": NAMESPACE,
                                                    "address": address, "threads": threads, "key": key}))
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, threads // processes)), TOKENIZERS_PARALLELISM="false")
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc_per_node={processes}", "-m", "runner.scale.torchrun_task", d],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=die_with_parent)
    outcome = ray.get(mailbox.kept.remote(f"{key}:outcome"))
    if outcome is not None:
        kind, value = outcome
        if kind == "done":
            return value
        raise value
    tail = " | ".join(line for line in proc.stdout.strip().splitlines()[-5:])
    raise TrainingError(f"member {member}: torchrun over {processes} processes exited {proc.returncode} without "
                        f"a result; its output ends: {tail}")


class RayBackend:
    """Trains a run's members as Ray tasks (runner.scale.backend.Backend); see the module docstring."""

    name = "ray"

    def __init__(self, compute, source: str):
        self.compute = compute
        self.source = source  # where the backend was chosen, for messages: "--backend" or "SPEC: compute.backend"
        self.started = False  # this process started Ray, and stops it in close()

    def connect(self) -> "RayBackend":
        ray = require_ray(self.source)
        if not ray.is_initialized():
            import logging

            address = self.compute.address
            self._probe(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, configure_logging=True)
            except (ConnectionError, ValueError, RuntimeError) as e:
                where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
                raise InputError(f"{self.source}: cannot connect to {where}: {e}") from None
            self.started = True
        self._check_fits()
        return self

    def _probe(self, address: str | None) -> None:
        """A HOST:PORT (or ray://HOST:PORT) that nothing answers on is exit 2 at once: Ray itself
        would retry for a minute, printing its own warnings."""
        import socket

        if not address or address == "auto" or address.startswith("local"):
            return
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(f"{self.source}: the Ray address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=3).close()
        except OSError as e:
            raise InputError(f"{self.source}: nothing answers at the Ray address {address!r} ({e.strerror or e}); "
                             "start the cluster (ray start --head) or correct the address") from None

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False

    @property
    def gpus(self) -> float:
        g = self.compute.gpus_per_member
        if g is None:  # 1 where the cluster has GPUs, else 0
            import ray

            return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        return float(g)

    @property
    def processes(self) -> int:
        """DDP ranks per member: `processes_per_member`, else one per GPU when a member has several."""
        if self.compute.processes_per_member is not None:
            return self.compute.processes_per_member
        return int(self.gpus) if self.gpus > 1 else 1

    def _check_fits(self) -> None:
        import ray

        cpus, gpus = float(self.compute.cpus_per_member), self.gpus
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
            return
        largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        raise InputError(
            f"{self.source}: a member asks for {cpus:g} CPUs and {gpus:g} GPUs ([compute] cpus_per_member, "
            f"gpus_per_member), but no node of the Ray cluster has that much (the largest has "
            f"{largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs); it would wait forever")

    def train_members(self, p, store, run_id: str, todo: list, make_job, result, say) -> bool:
        """Every member of `todo` as a task at once; each settled (runner.scale.members.settle) as it ends."""
        import ray

        if not todo:
            return True
        jobs = {m.name: make_job(m) for m in todo}
        progress = next(iter(jobs.values())).progress
        if progress is not None:
            progress.parallel = True  # several members train at once: steps on each member's own line
        watched = any(j.on_epoch is not None for j in jobs.values())
        ticket = ray.put(Ticket.of(p, run_id, runs_root(store), store.path, jobs[todo[0].name].verbose, watched))
        name = f"runner-mailbox-{uuid.uuid4().hex}"  # torchrun's rank 0 looks it up (runner.scale.torchrun_task)
        mailbox = _mailbox_class().options(name=name, namespace=NAMESPACE).remote()
        task = ray.remote(_member_task).options(
            num_cpus=float(self.compute.cpus_per_member), num_gpus=self.gpus, max_retries=self.compute.max_retries,
            retry_exceptions=False, name="runner-member")
        threads = max(1, int(self.compute.cpus_per_member))
        pending = {task.remote(ticket, m.name, mailbox, threads, self.processes, name): m.name for m in todo}

        def handle(msg):
            kind = msg[0]
            if kind == "store" and msg[1] in STORE_CALLS:
                return getattr(store, msg[1])(*msg[2], **msg[3])
            if kind == "progress" and msg[1] in PROGRESS_CALLS:
                return getattr(progress, msg[1])(*msg[2]) if progress is not None else None
            if kind == "say":
                return say(msg[1])
            if kind == "on_epoch":
                job = jobs[msg[1]]
                return job.on_epoch(msg[1], msg[2]) if job.on_epoch is not None else None
            raise TrainingError(f"runner.scale.ray_backend: unknown message {kind!r} from a member task")

        def pump(timeout: float) -> None:
            for i, msg in ray.get(mailbox.take.remote(timeout)):
                reply = answer(handle, msg)
                if i is not None:
                    mailbox.answer.remote(i, reply)

        try:
            while pending:
                pump(TAKE_TIMEOUT_S)
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in ready:
                    pump(0)  # what the task posted last comes before its end
                    member = pending.pop(ref)
                    if not settle(p, store, run_id, member, self._outcome(ref, member), result, say):
                        for other in pending.values():  # pruned: the trial's other members stop with it
                            store.finish_member(run_id, other, "pruned", error=f"stopped with {member}")
                        return False
            return True
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.kill(mailbox)

    def _outcome(self, ref, member: str):
        """The task's MemberDone, or the exception that ended it (unwrapped from Ray's)."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        try:
            return ray.get(ref)
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            return cause if isinstance(cause, BaseException) else TrainingError(f"member {member}: {e}")
        except RayError as e:  # the worker died more often than [compute] max_retries allows, or was cancelled
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return TrainingError(f"member {member}: its Ray task ended without a result after "
                                 f"{self.compute.max_retries} retries ({type(e).__name__}: {first}); the epochs "
                                 "stored so far are kept and `runner apply` resumes it")
