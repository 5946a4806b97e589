"""Named points in long work where a real runner process can be stopped from outside, so that a test
can act at an exact step (run `runner gc` while an apply has just renamed its adaptation into place,
say) with no mocks: with `RUNNER_PAUSE_AT=<name>[,<name>...]` in its environment, a process that
reaches a named point stops itself (SIGSTOP) until it gets SIGCONT. Unset, a point costs one lookup.

The points: `adapt-trained` (an adaptation trained, not yet in adapted/), `adapt-renamed` (in place, not
yet recorded), `adapt-recorded` (the member's adapt_key stored, its lock still held) and
`adapt-released` (the lock released, fine-tuning about to start).
"""

from __future__ import annotations

import os
import signal

ENV = "RUNNER_PAUSE_AT"


def point(name: str) -> None:
    """Stop this process here when RUNNER_PAUSE_AT names `name` (POSIX only)."""
    wanted = os.environ.get(ENV)
    if wanted and name in wanted.split(",") and hasattr(signal, "SIGSTOP"):
        os.kill(os.getpid(), signal.SIGSTOP)
