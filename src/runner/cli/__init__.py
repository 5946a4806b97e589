"""The `runner` command line: the typer app (runner.cli.app) and its commands, one module per group:
`training` (apply, validate, plugins, schema), `adopt`, `results` (runs, sql, compare, ensemble, plot, report),
`use` (predict, export), `serve`, `refit`, `calibrate`, `sweep` and `gc`. A new command is a function decorated
with `@command` in the module of its group. Nothing in the library imports this package.

A command imports the library inside its function, where a `# start-up time (runner.cli)` comment
marks it: the library pulls in torch, transformers and DuckDB (seconds), and `runner --help` or a
mistyped argument should answer at once.
"""

from __future__ import annotations

import sys

# The commands register themselves on `app` when their modules are imported, in this order, which is
# the order `runner --help` lists them in.
# isort: off
from runner.cli import training, adopt, results, calibrate, gc, refit, sweep, use, serve  # noqa: F401
# isort: on
from runner.cli.app import GLOBAL_FLAGS, app


def main() -> None:
    # --debug and --verbose are options of `runner` itself; accept them after the command too
    # (`runner apply x.toml --debug`), as a user types them.
    argv = sys.argv[1:]
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    app(args=flags + rest, prog_name="runner")

