"""`runner apply`, `runner validate`, `runner plugins` and `runner schema`: training, and checking before
training."""

from __future__ import annotations

import json
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from runner.cli.app import (
    PLUGINS_OPT,
    SET_OPT,
    STORE_OPT,
    Format,
    _registry,
    command,
    emit,
    err,
    note,
    options,
    out,
    overrides_of,
    say,
)
from runner.core import failures
from runner.core.quiet import quiet_libraries
from runner.errors import InputError


class Backend(str, Enum):
    local = "local"
    ray = "ray"


@command
def apply(
    spec: Path = typer.Argument(..., help="The spec TOML file."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    force: bool = typer.Option(False, "--force", help="Start a new run even if this spec already has one."),
    set_: Optional[list[str]] = SET_OPT,
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Run a sweep's trials in this many processes at once (on GPUs, one "
                                     "device each); the spec must have \\[sweep]."),
    backend: Optional[Backend] = typer.Option(None, "--backend",
                                              help="Where members train: local (one after another here) or ray "
                                                   "(every member at once as a Ray task); default \\[compute] backend."),
    address: Optional[str] = typer.Option(None, "--address",
                                          help="The Ray cluster to join with --backend ray (auto, ray://host:10001); "
                                               "default \\[compute] address, else Ray starts on this machine."),
    show_test: bool = typer.Option(False, "--show-test",
                                   help="Show test metrics every epoch while training (by default they show when "
                                        "a member ends, for its selected epoch: what you watch never chooses)."),
):
    """Validate (a dry run), train every member not yet complete, store everything, SWA and ensemble."""
    quiet_libraries()
    # start-up time (runner.cli)
    from runner.api import apply as run_apply
    from runner.core.progress import TrainingProgress

    overrides = overrides_of(set_)
    # what each extra worker runs: this command without --workers (runner.search.workers)
    argv = ["apply", str(spec), "--store", str(store)] + (["--plugins", str(plugins)] if plugins else [])
    argv += [x for text in (set_ or []) for x in ("--set", text)]
    # what resumes this run when it is interrupted: this command, and never with --force (a new run)
    resume = ["runner", *argv] + (["--backend", backend.value] if backend else []) + (["--address", address]
                                                                                     if address else [])
    with failures.resume_with(shlex.join(resume)):
        result = run_apply(spec, store, plugins, force=force, progress=TrainingProgress(err, show_test=show_test),
                           say=say, verbose=options.verbose, overrides=overrides, workers=workers, worker_argv=argv,
                           backend=backend.value if backend is not None else None, address=address)
    # start-up time (runner.cli)
    from runner.analysis.summary import summary_table

    # start-up time (runner.cli)
    from runner.search.sweep import SweepResult
    from runner.store import Store

    if result.status == "follower":  # a DDP rank other than 0: rank 0 prints and writes (runner.train.ranks)
        return

    if isinstance(result, SweepResult):  # a spec with [sweep]: the sweep's table, as `runner sweep` shows it
        # start-up time (runner.cli)
        from runner.analysis.sweep_view import load_view, render

        reader = Store(store).open_read()
        out.print(render(load_view(reader, result.sweep_id, _registry(spec, plugins))))
        if result.status == "failed":
            raise typer.Exit(1)
        return
    if result.run_id and result.status != "up-to-date":
        out.print(summary_table(Store(store), Store(store).run(result.run_id)))
    for replica in result.replicas:  # `repeats = N`: one table per replica that trained now
        if replica.run_id and replica.status != "up-to-date":
            out.print(summary_table(Store(store), Store(store).run(replica.run_id)))
    refit = result.refit  # [refit] strategy: the refit's own table, when it trained now
    if refit is not None and refit.run_id and refit.status != "up-to-date":
        out.print(summary_table(Store(store), Store(store).run(refit.run_id)))
    if result.status == "failed":
        raise typer.Exit(1)


@command
def validate(
    spec: Path = typer.Argument(..., help="The spec TOML file."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    check_models: bool = typer.Option(True, "--check-models/--no-check-models",
                                      help="Build each member's model and push a batch of each split through "
                                           "it (the dry run); --no-check-models checks the spec and data only."),
    set_: Optional[list[str]] = SET_OPT,
    show_spec: bool = typer.Option(False, "--show-spec",
                                   help="Print the resolved spec as TOML (every default filled in; a spec file "
                                        "itself) instead of the summary."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing when the spec is valid (the exit code "
                                                            "says it; problems are printed as always)."),
):
    """The dry run of `apply` (spec, data, models, Trainer, one batch and one step); writes nothing.

    Builds each member's model, Trainer, optimizer and scheduler, pushes one batch of each split through
    it and takes one optimizer step, and checks the store and the run's folders; then prints a short
    summary (--show-spec: the resolved spec as TOML).
    """
    quiet_libraries()
    # start-up time (runner.cli)
    from runner.api import validate as run_validate
    from runner.plugins.registry import describe_loaded

    p = run_validate(spec, store, plugins, check_models=check_models, overrides=overrides_of(set_))
    for line in p.checked.warnings if p.checked is not None else []:  # even with --quiet
        say(f"warning: {line}")
    if quiet:
        return
    if show_spec:
        # start-up time (runner.cli)
        from runner.spec.show import spec_toml

        sys.stdout.write(spec_toml(p.resolved))
        return
    loaded = describe_loaded(p.registry)
    if loaded:
        say(loaded)
    for line in _summary_lines(p, check_models, store):  # wrapped to fit 100 columns, even when piped
        out.print(line, highlight=False, markup=False, width=min(out.width, 100))


def _summary_lines(p, check_models: bool, store: Path) -> list[str]:
    """What `validate` found, in a few lines: the data, the members, how they train, select and ensemble."""
    r, d = p.resolved, p.data
    spec = r.spec
    counts = d.class_counts("train")
    shares = ", ".join(f"{n} {c / sum(counts):.1%}" for n, c in zip(d.label_names, counts))
    sizes = ", ".join(f"{k} {len(v)}" for k, v in d.splits.items())
    members = ", ".join(f"{m.name} ({m.backbone}{', ' + m.model if m.model else ''}, seed {m.seed})"
                        for m in r.members)
    epochs = sorted({m.train.epochs for m in r.members})
    losses = sorted({m.loss.name for m in r.members})
    lines = [
        f"ok {r.path}: spec hash {p.spec_hash[:12]}",
        f"  data      {spec.data.source} {d.dataset_id}: {sizes}",
        f"  classes   {shares} (in train)",
        f"  members   {len(r.members)}: {members}",
        f"  training  {'/'.join(map(str, epochs))} epochs, loss {'/'.join(losses)}, swa k={spec.swa.k}",
        f"  choosing  by eval_{r.metric} ({r.strategy}); ensemble of the {spec.ensemble.checkpoint} checkpoints, "
        f"{spec.ensemble.weights if isinstance(spec.ensemble.weights, str) else 'given'} weights",
    ]
    if spec.sweep is not None:
        lines.append(f"  sweep     {spec.sweep.trials} trials over {', '.join(spec.sweep.space)}")
    if p.adaptations:
        # start-up time (runner.cli)
        from runner.train.adapt import cached, root_for

        root = root_for(store)
        for member, a in p.adaptations.items():
            state = "cached" if cached(root, a.key) else "to train"
            lines.append(f"  adapt     {member} {a.key} ({len(a.texts)} texts, {len(a.heldout)} held out; {state})")
    if p.checked is not None:
        lines += [f"  weights   {line}" for line in p.checked.notes]
        lines += [f"  tokens    {line}" for line in p.checked.token_lines()]
    lines.append("  dry run   " + ("each member's model, Trainer, one batch of each split and one optimizer step: ok"
                                   if check_models else "skipped (--no-check-models)"))
    lines.append("  --show-spec prints the resolved spec as TOML")
    return lines


@command
def plugins(
    spec: Optional[Path] = typer.Argument(None, help="A spec: list what it would load (its plugins/ folder)."),
    plugins: Optional[Path] = typer.Option(None, "--plugins", help="Plugins directory to load."),
    format: Format = typer.Option(Format.table, "--format"),
):
    """List every registered backbone, loss, dataset, metric and selection strategy, and where it came from."""
    # start-up time (runner.cli)
    from runner.plugins.registry import KINDS, SINGULAR

    if spec is not None and not spec.is_file():
        raise InputError(f"SPEC {spec}: no such file")
    registry = _registry(spec, plugins)
    rows = []
    for kind in KINDS:
        for name in registry.names(kind):
            c = registry.get(kind, name)
            options = getattr(c, "options", None)
            detail = ", ".join(options.model_fields) if options is not None else ""
            if kind == "metrics":
                detail = "higher is better" if c.greater_is_better else "lower is better"
            elif kind == "selections":
                detail = c.description
            rows.append([SINGULAR[kind], name, c.origin, detail])
    cols = ["kind", "name", "origin", "options / details"]
    if format != Format.table:
        emit(cols, rows, format)
    else:
        # the origin (a plugin file's path) is what a user looks for: it gets the width, details fold
        table = Table(title="Registered components")
        widest = max((len(r[2]) for r in rows), default=10)
        for c in cols:
            table.add_column(c, overflow="fold", min_width=min(widest, 90) if c == "origin" else None)
        for r in rows:
            table.add_row(*r)
        out.print(table)
    if spec is None and plugins is None and Path("plugins").is_dir():
        note("./plugins was not loaded: plugins are loaded from beside a spec (give SPEC) or with --plugins DIR")




@command
def schema(
    spec: Optional[Path] = typer.Argument(None, help="A spec: include the plugins it would load (its plugins/ "
                                                     "folder)."),
    plugins: Optional[Path] = typer.Option(None, "--plugins", help="Plugins directory to include."),
    out: Optional[Path] = typer.Option(None, "--out", help="JSON file to write (default: stdout); an existing file "
                                                           "is replaced only when it is an earlier schema."),
):
    """The JSON Schema of a spec file, registered plugins' options included, for editor completion and checks
    (taplo / Even Better TOML: a `#:schema ./runner.schema.json` first line in the spec)."""
    # start-up time (runner.cli)
    from runner.spec.schema import is_schema, spec_schema
    from runner.store.writes import file_target, write_text

    if spec is not None and not spec.is_file():
        raise InputError(f"SPEC {spec}: no such file")
    target = None if out is None else file_target(
        out, "--out", suffixes=(".json",), recognise=is_schema, made_by="a schema `runner schema` wrote",
        protect=[("SPEC", spec)], example="runner.schema.json")
    text = json.dumps(spec_schema(_registry(spec, plugins)), indent=2, ensure_ascii=False) + "\n"
    if target is None:
        sys.stdout.write(text)
        return
    write_text(target, text)
    say(f"wrote {out}: put `#:schema {out}` (a path relative to the spec, or a URL) as a spec's first line")
