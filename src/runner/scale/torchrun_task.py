"""One member over several processes inside a Ray task (`[compute] gpus_per_member > 1`, or
`processes_per_member`): the task starts torchrun on its node with this module as the program.

    python -m torch.distributed.run --standalone --nproc_per_node N -m runner.scale.torchrun_task TASK_DIR

`TASK_DIR` holds `task.json` (the member, how to reach the driver's mailbox, and the key under which
the task left its runner.scale.remote.Ticket there). Rank 0 joins the Ray cluster, finds the run's mailbox
by name, takes the ticket and trains through the mailbox exactly as a one-process task does
(runner.scale.ray_backend), then leaves the outcome in the mailbox for the task; the other ranks follow it
(runner.train.ranks). Each process dies with its parent
(Linux `PR_SET_PDEATHSIG`): a Ray worker that is killed takes torchrun and every rank with it, so a
retried task never trains beside a leftover of the one before.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

from runner.core.quiet import quiet_libraries
from runner.errors import portable
from runner.scale import ddp
from runner.scale.members import run_member
from runner.scale.remote import unwrap
from runner.train import ranks


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def main(task_dir: str) -> None:
    die_with_parent()
    ranks.init()
    if ranks.following():
        ddp.follow()
        return
    task = json.loads((Path(task_dir) / "task.json").read_text())
    member, key = task["member"], task["key"]
    outcome: tuple
    mailbox = None
    try:
        import ray

        quiet_libraries()
        ray.init(address=task["address"], namespace=task["namespace"], log_to_driver=False,
                 logging_level=logging.ERROR)
        mailbox = ray.get_actor(task["mailbox"], namespace=task["namespace"])
        ticket = ray.get(mailbox.kept.remote(f"{key}:ticket"))

        def channel(msg):
            return unwrap(ray.get(mailbox.call.remote(msg)))

        def post(msg):
            mailbox.post.remote(msg)

        outcome = ("done", run_member(ticket.job(member, channel, post)))
    except BaseException as e:  # noqa: BLE001 - it travels back to the task, which raises it
        outcome = ("error", portable(e))
    finally:
        ranks.finish()
    if mailbox is not None:
        import ray

        ray.get(mailbox.keep.remote(f"{key}:outcome", outcome))
    if outcome[0] == "error":  # torchrun stops any rank still inside what failed here alone
        os._exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
