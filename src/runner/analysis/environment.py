"""Where a run was trained, as the HTML report shows it (`runner runs --long` shows the same keys)."""

from __future__ import annotations

import html

from runner.core.records import RunRecord
from runner.store import Store

# the order a person reads them in; any other recorded key follows
FIRST = ("runner", "python", "torch", "transformers", "duckdb", "git_commit", "host", "device", "spec", "plugins")


def environment_section(store: Store, run: RunRecord) -> tuple[str, str]:
    """(heading, HTML) of the report's section on the run's environment (runs.environment)."""
    env = store.environment(run.run_id)
    if not env:
        return "Environment", "<p>Not recorded: the run was trained by a runner older than this record.</p>"
    keys = [k for k in FIRST if k in env] + [k for k in env if k not in FIRST]
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(env[k]))}</dd>" for k in keys)
    return "Environment", f'<dl class="facts">{rows}</dl>'
