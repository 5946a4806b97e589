"""Commands that take a run out of the store: `runner predict` and `runner export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Group
from rich.text import Text

from runner.cli.app import PLUGINS_OPT, _read_registry, _registry, command, err, note, out, say
from runner.core.quiet import quiet_libraries
from runner.errors import InputError

PROGRESS_FROM = 10_000  # texts; below this a bar shows only on a terminal


@command
def predict(
    source: str = typer.Argument(..., metavar="RUN|DIR",
                                 help="A run (id or name) in the store, a sweep (its best trial's run), or a folder "
                                      "written by `runner export`."),
    input_file: Optional[str] = typer.Argument(
        None, metavar="INPUT",
        help="The texts: a .csv, .jsonl or .parquet file, a .txt file of one text per line, or - for standard input "
             "(one text per line, or the format --source names)."),
    text: Optional[list[str]] = typer.Option(
        None, "--text", help="A text to predict instead of INPUT (repeatable): printed, nothing stored."),
    strategy: Optional[str] = typer.Option(
        None, "--strategy",
        help="Which checkpoint of each member: `selected` (the default: the one the spec's selection metric "
             "chose), `swa`, or any strategy whose checkpoints runner kept on disk. An export has the one it "
             "was made with."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: csv on stdout)."),
    format: Optional[str] = typer.Option(None, "--format",
                                         help="csv, jsonl or parquet (default: from --output's extension, else csv)."),
    keep: Optional[str] = typer.Option(
        None, "--keep", metavar="COLUMNS",
        help="The input's columns to carry into the output, comma-separated (\"\" for none; default: all)."),
    data_source: Optional[str] = typer.Option(
        None, "--source", help="The dataset loader that reads INPUT, or txt (default: by its extension)."),
    text_column: str = typer.Option("text", "--text-column", help="INPUT's text column."),
    label_column: str = typer.Option("label", "--label-column",
                                     help="INPUT's label column; optional: with labels, the metrics are printed."),
    members: bool = typer.Option(False, "--members", help="Add each member's probabilities (<member>.p_<label>)."),
    calibrated: bool = typer.Option(False, "--calibrated",
                                    help="Apply the calibration `runner calibrate` stored (exit 2 if there is none)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, max=65536,
                                             help="Texts per forward pass (default: the run's evaluation batch size)."),
    store: Optional[Path] = typer.Option(None, "--store", help="The DuckDB results file (default results.duckdb)."),
    plugins: Optional[Path] = PLUGINS_OPT,
    no_store: bool = typer.Option(False, "--no-store", help="Do not keep the predictions in the store."),
):
    """Apply a run's ensemble (or an exported folder's) to the texts of INPUT, or to --text.

    Writes one row per text: `pred_label` (the predicted label), `pred_id` (its index), `p_<label>` for
    every class, then INPUT's own columns (--keep picks them). The texts and every member's and the
    ensemble's probabilities go into the store as the split `input-<hash of the content>` (predicting
    it again replaces them); stored probabilities are never calibrated, like every prediction in the
    store. --text prints its predictions and stores nothing.
    """
    # start-up time (runner.cli)
    from runner.data.inputs import STDIN, read_input, typed_texts
    from runner.store import Store
    from runner.use.choice import check_calibrated, choose
    from runner.use.output import check_output, kept_columns, output_columns, output_format, write_output
    from runner.use.predict import Predictor

    quiet_libraries()
    if text and input_file is not None:
        raise InputError(f"--text: give INPUT ({input_file}) or --text, not both")
    if not text and input_file is None:
        raise InputError("INPUT: missing; give a file of texts, - to read standard input, or --text \"...\"")
    fmt = output_format(output, format)
    as_dir = _is_dir(source)
    store_path = store if store is not None else Path("results.duckdb")
    target = check_output(output, Path(input_file) if input_file not in (None, STDIN) else None,
                          None if as_dir else store_path)
    registry = _registry(None, plugins) if as_dir else _read_registry(plugins, store_path, source)
    writer = None
    if as_dir:
        # start-up time (runner.cli)
        from runner.use.export import choice_from_manifest, load, read_manifest

        choice = choice_from_manifest(Path(source), read_manifest(Path(source)))
        if strategy not in (None, "selected", choice.strategy):
            raise InputError(f"--strategy {strategy!r}: the export {source} holds strategy {choice.strategy!r} "
                             "only; export the run again with --strategy to use another")
        labels = choice.labels
    else:
        reader = Store(store_path).open_read()
        run = run_or_sweep(reader, source)
        labels = list(run.label_names)
    if text:
        inp = typed_texts(text)
    else:
        inp = read_input(input_file, labels, registry, data_source, text_column, label_column)
    carried = kept_columns(inp.columns, keep)
    if not as_dir:
        choice = choose(reader, run, registry, "selected" if strategy is None else strategy)
        if not no_store and not text:
            writer = Store(store_path)
            writer.check_writable()
    elif (store is not None or no_store) and not text:
        note(f"{source} is an exported folder: it has no store, so nothing is stored")
    if calibrated:
        check_calibrated(choice, members)
    if as_dir:
        predictor = load(Path(source), plugins_dir=plugins, batch_size=batch_size, registry=registry)
    else:
        predictor = Predictor.load(choice, registry=registry, batch_size=batch_size)
    prediction = _run(predictor, inp.texts, calibrated)

    if writer is not None:
        writer.open(create=False)
        if choice.built is not None:  # the ensemble of this strategy was not in the store yet: as compare does
            writer.log_ensembles([choice.built])
        # the models' own probabilities, never calibrated, like every other prediction row (so SQL compares
        # them with test); `inputs.calibrated` says whether the file written was, `calibrations` holds how
        rows = [("member", m.name, m.checkpoint, prediction.raw_members[m.name]) for m in choice.members]
        if len(choice.members) > 1:
            rows.append(("ensemble", "ensemble", choice.strategy, prediction.raw_probs))
        writer.log_input(run.run_id, run.dataset_id, inp.split, inp.content_hash, inp.source, inp.texts, inp.labels,
                         rows, choice.strategy, calibrated)
    what = f"run {choice.run.get('run_id')}" if not as_dir else f"export {source}"
    weights = ", ".join(f"{m.name} {w:.3f}" for m, w in zip(choice.members, choice.weights))
    how = (f"{what}, strategy {choice.strategy} ({choice.method} weights: {weights})"
           f"{', calibrated' if calibrated else ''}")
    if text and output is None and format is None:  # for a person: each text and its probabilities
        out.print(_text_predictions(inp.texts, prediction.probs, choice.labels))
        say(f"predicted with {how}; nothing stored")
        return
    write_output(output_columns(prediction, choice.labels, members, carried), target, fmt)
    given = "standard input" if input_file == STDIN else input_file or "--text"
    say(f"{len(inp.texts)} texts from {given} predicted with {how}"
        + (f"; written to {output}" if output is not None else ""))
    if writer is not None:
        say(f"stored in {store_path} as split {inp.split!r} (SQL: SELECT * FROM predictions WHERE split = "
            f"'{inp.split}')")
    if inp.labels is not None:
        console = out if output is not None else err
        console.print(_summary(prediction, inp.labels, choice, registry, members))


def _text_predictions(texts: list[str], probs, labels: list[str]):
    """Each --text, then its classes from the most probable down, with a bar."""
    parts = []
    width = max(len(name) for name in labels)
    for text, p in zip(texts, probs):
        shown = text if len(text) <= 96 else text[:93] + "..."
        parts.append(Text(shown, style="bold"))
        for j in sorted(range(len(labels)), key=lambda j: -p[j]):
            line = Text(f"  {labels[j]:<{width}}  {p[j]:.4f}  ")
            line.append("█" * int(round(float(p[j]) * 30)), style="green" if j == int(p.argmax()) else "dim")
            parts.append(line)
    return Group(*parts)


def run_or_sweep(reader, ref: str):
    """A run by id or name, or for a sweep's id or name the run of its best finished trial."""
    try:
        return reader.run(ref)
    except InputError:
        # start-up time (runner.cli)
        from runner.analysis.sweep_view import best_run

        best = best_run(reader, ref)
        if best is None:
            raise
        note(f"{ref} is a sweep: using its best trial's run {best}")
        return reader.run(best)


def _is_dir(source: str) -> bool:
    """Whether RUN|DIR names a folder; a name the file system cannot hold (too long) is a run reference."""
    try:
        return Path(source).is_dir()
    except (OSError, ValueError):
        return False


def _run(predictor, texts: list[str], calibrated: bool):
    """Predict, with a progress bar on stderr when it is a terminal or the input is long."""
    total = len(texts) * len(predictor.members)
    if not (err.is_terminal or len(texts) >= PROGRESS_FROM):
        return predictor.run(texts, calibrated=calibrated)
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    what = f"predicting {len(texts)} texts with {len(predictor.members)} member(s)"
    with Progress(TextColumn(what), BarColumn(bar_width=30), TaskProgressColumn(), TimeElapsedColumn(),
                  console=err, transient=err.is_terminal) as progress:
        task = progress.add_task("", total=total)
        return predictor.run(texts, calibrated=calibrated, progress=lambda k: progress.advance(task, k))


def _summary(prediction, labels, choice, registry, members: bool):
    """Metrics and predicted class shares against the input's labels, as `compare` shows them (a table
    that fits the terminal)."""
    import numpy as np

    # start-up time (runner.cli)
    from runner.analysis.columns import SHORT
    from runner.analysis.tables import table as fit_table

    names = choice.labels
    k = len(names)
    true = np.bincount(labels, minlength=k) / len(labels)
    fns = registry.metric_fns()
    table = fit_table(title=f"Against the labels of the input ({len(labels)} rows)",
                      caption="tvd: the distance of the predicted class distribution from the true one; class "
                              "columns: share predicted, true share in the header")
    table.add_column("member")
    table.add_column("checkpoint", overflow="fold")
    for name in fns:
        table.add_column(SHORT.get(name, name.replace("_", "\n")), justify="right")
    table.add_column("tvd", justify="right")
    for name, t in zip(names, true):
        table.add_column(f"{name.replace('_', chr(10))}\n{t:.1%}", justify="right", min_width=5, overflow="ellipsis")
    rows = [("ensemble" if len(choice.members) > 1 else choice.members[0].name, choice.strategy, prediction.probs)]
    if members and len(choice.members) > 1:
        rows += [(m.name, m.checkpoint, prediction.members[m.name]) for m in choice.members]
    for name, checkpoint, probs in rows:
        shares = np.bincount(probs.argmax(axis=1), minlength=k) / len(probs)
        cells = [name, checkpoint] + [f"{float(fn(probs, labels)):.4f}" for fn in fns.values()]
        cells += [f"{0.5 * float(np.abs(shares - true).sum()):.4f}"] + [f"{s:.1%}" for s in shares]
        table.add_row(*cells, style="italic" if name == "ensemble" else None)
    return table


@command
def export(
    run: str = typer.Argument(..., metavar="RUN",
                              help="Run id, or a run name (its latest run), or a sweep (its best trial's run)."),
    directory: Path = typer.Argument(..., metavar="DIR", help="The folder to write (new, or empty)."),
    strategy: str = typer.Option("selected", "--strategy",
                                 help="Which checkpoint of each member: `selected`, `swa`, or any strategy whose "
                                      "checkpoints runner kept on disk."),
    store: Path = typer.Option("results.duckdb", "--store", help="The DuckDB results file."),
    onnx: bool = typer.Option(False, "--onnx", help="Also write each member as ONNX (model.onnx); predict, serve "
                                                    "and runner.load run it with ONNX Runtime when installed."),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="int8",
                                           help="With --onnx: add int8 dynamic quantization (model.int8.onnx) "
                                                "and run that."),
    plugins: Optional[Path] = PLUGINS_OPT,
):
    """Write a run's ensemble as a self-contained folder (manifest, weights, tokenizers).

    DIR gets manifest.json, a model card (README.md, Hugging Face's format, its numbers from the store) and
    each member's safetensors, config, tokenizer and runner.json; `runner
    predict DIR INPUT` and `runner.load(DIR)` use it without the store, the spec or runs/.
    """
    # start-up time (runner.cli)
    from runner.analysis.compare import default_strategies
    from runner.analysis.compare_seeds import over_seeds
    from runner.analysis.tables import table as fit_table
    from runner.store import Store
    from runner.use.card import model_card
    from runner.use.choice import choose
    from runner.use.export import check_target, size_of
    from runner.use.export import export as write
    from runner.use.onnx import check_export_args

    check_export_args(onnx, quantize)
    target = check_target(directory, store)
    registry = _read_registry(plugins, store, run)
    reader = Store(store).open_read()
    record = run_or_sweep(reader, run)
    choice = choose(reader, record, registry, strategy)
    seeds = None
    if record.repeat_group is not None:  # a replica of `repeats = N`: the card says how the strategies fare over seeds
        over = over_seeds(reader, record, registry, default_strategies(record, registry))
        seeds = over.records() if over is not None else None
    manifest = write(choice, target, card=model_card(reader, record, choice, seeds), onnx=onnx, quantize=quantize,
                     registry=registry, plugins_dir=plugins)
    table = fit_table(f"{directory}: run {choice.run['run_id']}, {choice.strategy}")
    table.add_column("member", overflow="fold")
    for col in ("checkpoint", "backbone"):
        table.add_column(col)
    table.add_column("weight", justify="right", no_wrap=True)
    table.add_column("calibrated")
    if onnx:
        table.add_column("onnx")
    for m in manifest["members"]:
        table.add_row(m["name"], m["checkpoint"], m["backbone"] or "", f"{m['weight']:.3f}",
                      m["calibration"]["method"] if m["calibration"] else "", *([m["onnx"]] if onnx else []))
    out.print(table)
    cal = manifest["ensemble"]["calibration"]
    say(f"{size_of(directory) / 1e6:.1f} MB; ensemble calibration: {cal['method'] if cal else 'none'}; "
        f"use it with `runner predict {directory} INPUT` or `runner.load({str(directory)!r})`")
    note(reader.notice)
