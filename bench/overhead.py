"""How much does runner cost on top of a plain Hugging Face `Trainer` script?

Runs the quickstart's first member twice, back to back, each in its own Python subprocess so that
both pay the same interpreter and import start-up:

(a) runner: a spec derived from specs/quickstart.toml with only its first member (written to a temp
    dir), trained by `runner apply SPEC --store <fresh temp store>` (the real CLI entry point,
    `runner.cli.app`, progress bar and final summary table included). runner stores every epoch's
    metrics and every validation *and test* example's probabilities, and predicts the test split
    every epoch.
(b) plain: the notebook's way: a `Trainer` with validation every epoch, a checkpoint every epoch,
    `load_best_model_at_end=True`, `metric_for_best_model="eval_accuracy"`, `save_total_limit=2`,
    early stopping with the spec's patience, focal loss through `compute_loss_func`
    (`runner.losses.focal_loss`), accuracy through `compute_metrics`; no store, no test predictions.
    It uses exactly the same inputs: the train/valid split comes from `runner.synthetic.generate` +
    `runner.data.prepare` (the script checks that its dataset hash equals the one runner stored), the
    model and tokenizer from the scratch backbone's build function (`runner.builtins.backbones
    .build_scratch`, same seed, so the same initial weights), and every `TrainingArguments` value
    (epochs, batch sizes, LR, scheduler, warmup, weight decay, accumulation, clipping, seed) is taken
    from the resolved spec. The script checks that both sides trained on the same examples (runner's
    stored `dataset_id` equals the plain side's hash of its split) for the same number of epochs, and
    shows the last epoch's validation accuracy of each: they are equal, because the scratch tokenizer
    is deterministic (the same vocabulary in every process) and runner forks the RNG around its extra
    test and SWA predictions, so both sides start from the same weights and see the same batches.

Wall time is measured by this process around each subprocess (start to exit). The ratio is
runner / plain. CPU time (user + sys of the subprocess, from `getrusage`) is shown too: on a shared
machine it is less disturbed by other processes than wall time. With `--repeat N` the two alternate
N times (a, b, a, b, ...) and medians are shown.

Store insert rate: the runner subprocess is started through a small bootstrap (`_runner` mode of this
script) that wraps `Store.log_checkpoint` and `Store.put_examples` (runner's two bulk writers) with a
`perf_counter` timer before it hands over to `runner.cli.app`. Both methods return the number of
rows they wrote, so insert rate = rows written / seconds spent inside those calls, where the seconds
cover everything a write costs: building the Arrow batches, opening the DuckDB file, deleting old
rows, the inserts and the commit. It is the real writes of the real run, not a replay. The bootstrap
also times every other `Store` call (small writes such as run/member status, and reads) so that the
table shows the share of the wall time spent in the store at all, and `Trainer.predict` (which runner
uses for the test split every epoch, and for SWA) so that the cost of the test predictions is
visible. The wrappers cost a few microseconds per call (a few dozen calls a run).

    python bench/overhead.py                 # one a/b pair
    python bench/overhead.py --repeat 3      # three alternating pairs, medians
    python bench/overhead.py --epochs 2      # override [train].epochs on both sides

The last line of output is one JSON object with the figures (for the README / notes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "specs" / "quickstart.toml"


# -- a minimal TOML writer (the spec has strings, numbers, booleans, lists and tables only) ------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(doc: dict) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list)) or
             (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                lines.append(f"\n[[{k}]]")
                lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def derived_spec(epochs: int | None) -> dict:
    doc = tomllib.loads(QUICKSTART.read_text())
    doc["members"] = doc["members"][:1]
    if epochs is not None:
        doc.setdefault("train", {})["epochs"] = epochs
        if doc.get("swa", {}).get("k", 0) > epochs:  # runner refuses SWA over more epochs than it trains
            doc["swa"]["k"] = epochs
    return doc


def plain_config(spec_path: Path) -> dict:
    """Every value the plain script needs, from runner's own resolution of the derived spec."""
    from runner.plugins import default_plugins_dir, load_registry
    from runner.spec import load_and_resolve

    resolved = load_and_resolve(spec_path, load_registry(default_plugins_dir(spec_path)))
    spec, m = resolved.spec, resolved.members[0]
    t = m.train
    return {
        "spec_seed": spec.seed,
        "data": {"valid": spec.data.valid, "test": spec.data.test, "labels": spec.data.labels,
                 "text_column": spec.data.text_column, "label_column": spec.data.label_column,
                 "max_length": spec.data.max_length, "special_tokens": list(spec.data.special_tokens),
                 "options": resolved.data_options.model_dump(mode="json")},
        "member": {"name": m.name, "seed": m.seed, "options": m.options.model_dump(mode="json")},
        "train": {"epochs": t.epochs, "batch_size": t.batch_size,
                  "eval_batch_size": t.eval_batch_size or 2 * t.batch_size,
                  "learning_rate": t.learning_rate, "lr_scheduler": t.lr_scheduler, "warmup": t.warmup,
                  "weight_decay": t.weight_decay, "gradient_accumulation_steps": t.gradient_accumulation_steps,
                  "max_grad_norm": t.max_grad_norm, "trainer_args": t.trainer_args},
        "loss": {"name": m.loss.name, "label_smoothing": m.loss.label_smoothing,
                 **m.loss_options.model_dump(mode="json")},
        "patience": spec.selection.early_stopping_patience,
        "metric": resolved.metric,
    }


# -- (a) the runner subprocess ---------------------------------------------------------------------------


def runner_main(spec: str, store: str, timing_out: str) -> None:
    """Bootstrap: time Store calls, then run the real CLI (`runner apply SPEC --store STORE`)."""
    import atexit
    import functools

    from runner import store as store_mod

    stats = {"insert_rows": 0, "insert_s": 0.0, "insert_calls": 0, "store_other_s": 0.0, "store_other_calls": 0}
    depth = [0]

    def wrap(name, bulk):
        fn = getattr(store_mod.Store, name)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            depth[0] += 1
            out = None
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                return out
            finally:
                dt = time.perf_counter() - t0
                depth[0] -= 1
                if depth[0] == 0:  # count only the outermost Store call
                    if bulk:
                        stats["insert_s"] += dt
                        stats["insert_calls"] += 1
                        stats["insert_rows"] += int(out or 0)
                    else:
                        stats["store_other_s"] += dt
                        stats["store_other_calls"] += 1

        setattr(store_mod.Store, name, timed)

    for name in ("log_checkpoint", "put_examples"):
        wrap(name, bulk=True)
    for name, member in list(vars(store_mod.Store).items()):
        if callable(member) and not name.startswith("_") and name not in ("log_checkpoint", "put_examples",
                                                                          "connect", "transaction"):
            wrap(name, bulk=False)
    # the test split's prediction every epoch (and SWA's) goes through Trainer.predict: time it too
    import transformers

    predict = transformers.Trainer.predict
    stats.update(predict_s=0.0, predict_calls=0)

    @functools.wraps(predict)
    def timed_predict(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return predict(*args, **kwargs)
        finally:
            stats["predict_s"] += time.perf_counter() - t0
            stats["predict_calls"] += 1

    transformers.Trainer.predict = timed_predict
    atexit.register(lambda: Path(timing_out).write_text(json.dumps(stats)))

    from runner.cli import app

    app(["apply", spec, "--store", store], prog_name="runner")


# -- (b) the plain Trainer subprocess ---------------------------------------------------------------------


def plain_main(config_path: str, out_dir: str, result_out: str) -> None:
    """The notebook's training, with runner's data and model builders and nothing stored."""
    import logging
    import warnings
    from types import SimpleNamespace

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments,
                              set_seed)
    from transformers.utils import logging as hf_logging

    from runner import synthetic
    from runner.builtins.backbones import ScratchOptions, build_scratch
    from runner.backbones import BackboneContext
    from runner.data import RawDataset, prepare
    from runner.losses import focal_loss

    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    cfg = json.loads(Path(config_path).read_text())
    d, m, t, lc = cfg["data"], cfg["member"], cfg["train"], cfg["loss"]

    # data: the synthetic loader's rows, split by runner.data.prepare (same seeds as runner)
    opts = d["options"]
    texts, labels = synthetic.generate(opts["size"], seed=cfg["spec_seed"], language=opts["language"],
                                       noise=opts["noise"])
    raw = RawDataset(splits={"train": [{"text": x, "label": int(y)} for x, y in zip(texts, labels)]},
                     label_names=list(synthetic.LABEL_NAMES))
    data_spec = SimpleNamespace(source="synthetic", valid=d["valid"], test=d["test"], labels=d["labels"],
                                text_column=d["text_column"], label_column=d["label_column"])
    data = prepare(data_spec, raw, cfg["spec_seed"])
    train, valid = data.splits["train"], data.splits["valid"]

    # model and tokenizer: the scratch backbone, seeded as runner seeds it
    set_seed(m["seed"])
    ctx = BackboneContext(model=None, num_labels=data.num_labels, label_names=data.label_names,
                          train_texts=train.texts, special_tokens=d["special_tokens"],
                          max_length=d["max_length"], seed=m["seed"])
    model, tokenizer = build_scratch(ctx, ScratchOptions(**m["options"]))

    class Encoded(torch.utils.data.Dataset):
        def __init__(self, split):
            self.enc = tokenizer(split.texts, truncation=True, max_length=d["max_length"])
            self.labels = split.labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            item = {k: self.enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in self.enc}
            item["labels"] = int(self.labels[i])
            return item

    assert lc["name"] == "focal", "the quickstart uses focal loss"
    alpha = lc["alpha"]
    if isinstance(alpha, (int, float)):
        alpha = torch.full((data.num_labels,), float(alpha))
    elif isinstance(alpha, list):
        alpha = torch.tensor(alpha, dtype=torch.float32)
    elif alpha is not None:
        raise SystemExit(f"alpha {alpha!r} is not handled by this benchmark")

    def compute_loss(outputs, labels, num_items_in_batch=None):
        return focal_loss(outputs.logits, labels, gamma=lc["gamma"], alpha=alpha,
                          label_smoothing=lc["label_smoothing"])

    def compute_metrics(eval_pred):
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return {"accuracy": float((np.argmax(logits, -1) == eval_pred.label_ids).mean())}

    args = TrainingArguments(
        output_dir=out_dir,
        num_train_epochs=t["epochs"],
        per_device_train_batch_size=t["batch_size"],
        per_device_eval_batch_size=t["eval_batch_size"],
        learning_rate=t["learning_rate"],
        lr_scheduler_type=t["lr_scheduler"],
        warmup_steps=t["warmup"],
        weight_decay=t["weight_decay"],
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        max_grad_norm=t["max_grad_norm"],
        seed=m["seed"],
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="eval_accuracy",
        save_total_limit=2,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        **t["trainer_args"],
    )
    callbacks = [EarlyStoppingCallback(early_stopping_patience=cfg["patience"])] if cfg["patience"] else []
    trainer = Trainer(model=model, args=args, train_dataset=Encoded(train), eval_dataset=Encoded(valid),
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=compute_metrics, compute_loss_func=compute_loss, callbacks=callbacks)
    trainer.train()
    evals = {int(round(h["epoch"])): h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h}
    Path(result_out).write_text(json.dumps({"dataset_id": data.dataset_id, "eval_accuracy": evals}))


# -- the driver --------------------------------------------------------------------------------------------


def timed_run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one subprocess, start to exit."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        raise SystemExit(f"{cmd[2]} failed with exit code {proc.returncode}")
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def runner_eval_accuracy(store: Path) -> tuple[str, dict[int, float]]:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        dataset_id = con.execute("SELECT dataset_id FROM runs").fetchall()[0][0]
        rows = con.execute("SELECT epoch, eval_accuracy FROM epochs ORDER BY epoch").fetchall()
    finally:
        con.close()
    return dataset_id, {int(e): float(v) for e, v in rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="runner apply vs a plain Trainer script: wall time and store insert rate.")
    ap.add_argument("--repeat", type=int, default=1, help="alternate a/b this many times; medians are reported")
    ap.add_argument("--epochs", type=int, default=None, help="override [train].epochs (both sides)")
    opts = ap.parse_args(argv)
    if opts.repeat < 1:
        ap.error("--repeat must be at least 1")
    if opts.epochs is not None and opts.epochs < 1:
        ap.error("--epochs must be at least 1")

    from rich.console import Console
    from rich.table import Table

    console = Console()
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="runner-overhead-") as tmp:
        tmp = Path(tmp)
        spec_path = tmp / "spec" / "quickstart1.toml"
        spec_path.parent.mkdir()
        spec_path.write_text(to_toml(derived_spec(opts.epochs)))
        cfg_path = tmp / "plain.json"
        cfg = plain_config(spec_path)
        cfg_path.write_text(json.dumps(cfg))
        console.print(f"quickstart member [bold]{cfg['member']['name']}[/], {cfg['train']['epochs']} epochs, "
                      f"{opts.repeat} alternating pair(s) of runs, {os.cpu_count()} CPUs", highlight=False)
        for i in range(opts.repeat):
            work = tmp / f"pair{i}"
            (work / "store").mkdir(parents=True)
            store = work / "store" / "results.duckdb"
            timing = work / "store_timing.json"
            a, a_cpu = timed_run([sys.executable, __file__, "_runner", str(spec_path), str(store), str(timing)], env)
            result = work / "plain_result.json"
            b, b_cpu = timed_run([sys.executable, __file__, "_plain", str(cfg_path), str(work / "plain_out"),
                                  str(result)], env)
            st = json.loads(timing.read_text())
            dataset_id, runner_acc = runner_eval_accuracy(store)
            plain = json.loads(result.read_text())
            plain_acc = {int(k): v for k, v in plain["eval_accuracy"].items()}
            run = {"runner_s": a, "plain_s": b, "ratio": a / b, "runner_cpu_s": a_cpu, "plain_cpu_s": b_cpu,
                   "cpu_ratio": a_cpu / b_cpu, "insert_rows": st["insert_rows"], "insert_s": st["insert_s"],
                   "insert_rows_per_s": st["insert_rows"] / st["insert_s"],
                   "store_total_s": st["insert_s"] + st["store_other_s"], "predict_s": st["predict_s"],
                   "runner_epochs": len(runner_acc), "plain_epochs": len(plain_acc),
                   "runner_last_eval_accuracy": runner_acc[max(runner_acc)],
                   "plain_last_eval_accuracy": plain_acc[max(plain_acc)],
                   "same_data": dataset_id == plain["dataset_id"]}
            runs.append(run)
            console.print(f"pair {i + 1}: runner {a:.2f} s (cpu {a_cpu:.1f} s), plain {b:.2f} s (cpu {b_cpu:.1f} s), "
                          f"ratio {a / b:.3f}; {st['insert_rows']} rows stored in {st['insert_s'] * 1000:.0f} ms; "
                          f"epochs {len(runner_acc)}/{len(plain_acc)}, last eval_accuracy "
                          f"{run['runner_last_eval_accuracy']:.4f}/{run['plain_last_eval_accuracy']:.4f}",
                          highlight=False)

    keys = ("runner_s", "plain_s", "ratio", "runner_cpu_s", "plain_cpu_s", "cpu_ratio", "insert_rows", "insert_s",
            "insert_rows_per_s", "store_total_s", "predict_s")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    same_data = all(r["same_data"] for r in runs)
    same_epochs = all(r["runner_epochs"] == r["plain_epochs"] for r in runs)
    table = Table(title=f"runner apply vs plain Trainer · quickstart member 1 · median of {len(runs)}")
    table.add_column("measure")
    table.add_column("runner", justify="right")
    table.add_column("plain", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("wall time", f"{med['runner_s']:.2f} s", f"{med['plain_s']:.2f} s", f"[bold]{med['ratio']:.3f}[/]")
    if len(runs) > 1:
        best_a, best_b = min(r["runner_s"] for r in runs), min(r["plain_s"] for r in runs)
        table.add_row(f"wall time, best of {len(runs)}", f"{best_a:.2f} s", f"{best_b:.2f} s", f"{best_a / best_b:.3f}")
    table.add_row("CPU time (user+sys)", f"{med['runner_cpu_s']:.2f} s", f"{med['plain_cpu_s']:.2f} s",
                  f"{med['cpu_ratio']:.3f}")
    table.add_row("rows written to the store", f"{med['insert_rows']:.0f}", "0", "")
    table.add_row("time inside bulk store writes", f"{med['insert_s'] * 1000:.0f} ms", "", "")
    table.add_row("store insert rate", f"{med['insert_rows_per_s']:,.0f} rows/s", "", "")
    table.add_row("time in the store, all calls", f"{med['store_total_s']:.2f} s", "",
                  f"{100 * med['store_total_s'] / med['runner_s']:.1f} % of wall")
    table.add_row("Trainer.predict (test every epoch, SWA)", f"{med['predict_s']:.2f} s", "",
                  f"{100 * med['predict_s'] / med['runner_s']:.1f} % of wall")
    table.add_row("same data (dataset hash) / same epoch count", f"{same_data} / {same_epochs}", "", "")
    console.print(table)
    summary = {
        "bench": "overhead", "member": cfg["member"]["name"], "epochs": cfg["train"]["epochs"], "repeat": len(runs),
        "cpus": os.cpu_count(), **{k: (round(v, 4) if k.endswith("ratio") else round(v, 3)) for k, v in med.items()},
        "same_data": same_data, "same_epochs": same_epochs,
        "runs": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
    }
    best_a, best_b = min(r["runner_s"] for r in runs), min(r["plain_s"] for r in runs)
    summary.update(best_runner_s=round(best_a, 3), best_plain_s=round(best_b, 3), best_ratio=round(best_a / best_b, 4))
    summary["insert_rows"] = int(summary["insert_rows"])
    summary["insert_rows_per_s"] = round(med["insert_rows_per_s"])
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_runner":
        runner_main(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "_plain":
        plain_main(*sys.argv[2:5])
    else:
        main()
