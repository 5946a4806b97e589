"""`runner adopt`: a Hugging Face Trainer output folder, trained before runner, stored as a run."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from runner.cli.app import PLUGINS_OPT, STORE_OPT, _registry, command, out, say
from runner.core.quiet import quiet_libraries


@command
def adopt(
    output_dir: Path = typer.Argument(..., help="A Trainer output_dir: its checkpoint-* folders, each with "
                                                "trainer_state.json and model.safetensors."),
    data: List[str] = typer.Option(
        ..., "--data", metavar="SPEC_OR_FILES",
        help="The data the run was evaluated on: the spec whose [data] it was trained on (a .toml file), or "
             "`--data valid=PATH --data test=PATH` (csv, jsonl, parquet with `text` and `label` columns; labels "
             "as the model's id2label names or ids)."),
    name: Optional[str] = typer.Option(None, "--name", help="The run's name (default: OUTPUT_DIR's folder name); "
                                                            "adopted folders of one name and data are members "
                                                            "of one run, for `runner ensemble NAME`."),
    member: str = typer.Option("member", "--member", help="This folder's member name in the run."),
    metric: str = typer.Option("eval_accuracy", "--metric", help="The metric that selects a checkpoint "
                                                                 "(eval_loss, or any metric runner computes)."),
    swa: Optional[int] = typer.Option(None, "--swa", help="Average the last K kept checkpoints into an SWA "
                                                          "checkpoint (default: all kept; 0: none)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="The label names in id order, comma-separated "
                                                                "(default: the model's id2label; a spec's own)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1, help="Truncate texts to this many "
                                                                               "tokens (default: the spec's, else "
                                                                               "the model's, at most 512)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Examples per prediction batch."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
):
    """Store a Trainer output folder as a run: predict the valid/test data with each kept checkpoint.

    The run holds every epoch Trainer logged (trainer_state.json's log_history: train and validation
    loss), each kept checkpoint's predictions and metrics, an SWA checkpoint over the kept ones, and the
    selected checkpoint's model and tokenizer; `runner compare`, `report`, `ensemble`, `predict` and
    `export` then answer for it. Selection strategies choose among the kept checkpoints.

    Pickled files in the folder (training_args.bin, optimizer.pt, scheduler.pt, rng_state*.pth,
    pytorch_model.bin) are never unpickled: weights are read from model.safetensors only, a config that
    names custom code (auto_map) is refused, and no code from the folder runs.
    """
    quiet_libraries()
    # start-up time (runner.cli)
    from runner.analysis.summary import summary_table
    from runner.hf.adopt import adopt as store_adopted
    from runner.hf.adopt import plan_adopt
    from runner.store import Store

    registry = _registry(Path(data[0]) if data and data[0].endswith(".toml") else None, plugins)
    names = [x.strip() for x in labels.split(",")] if labels else None
    p = plan_adopt(output_dir, data, registry, name=name, member=member, metric=metric, swa=swa, labels=names,
                   max_length=max_length)
    st = Store(store)
    st.check_writable()
    run_id, _ = store_adopted(p, st, registry, batch_size=batch_size, say=say)
    out.print(summary_table(Store(store), Store(store).run(run_id)))
