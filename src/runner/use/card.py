"""The model card `runner export` writes as DIR/README.md: the Hugging Face format (a YAML header,
then Markdown), every number read from the store.

- the header: labels, the ensemble's test metrics (`model-index`), library and pipeline tags;
- the spec (its hash, and the spec itself as TOML), the data (dataset id, examples per split and
  the class shares of each), each member's and the ensemble's test metrics (the `metrics` table, or
  the ensemble built for the export when the store held none for the strategy) and confusion matrix
  (from the stored test probabilities), the strategy, the calibration, intended use and limitations,
  and the versions the run was trained with.

`card_metrics` (the test metrics) is also written into the manifest, so `runner serve` shows it on /metadata.
"""

from __future__ import annotations

import json

import numpy as np
import tomli_w

from runner.use.choice import Choice
from runner.version import __version__

CARD = "README.md"
METRICS = ("accuracy", "f1_macro", "log_loss")
HF_TYPES = {"accuracy": "accuracy", "f1_macro": "f1", "log_loss": "log_loss"}  # model-index metric types
SPLITS = ("train", "valid", "test")


def _test(reader, run, choice: Choice) -> dict[str, tuple[dict, np.ndarray | None]]:
    """name -> ({metric: test value}, confusion matrix or None): each member, then the ensemble."""
    stored = reader.checkpoint_metrics(run.run_id)
    out = {}
    with reader.probabilities() as probs:
        for m in choice.members:
            found = stored.get(("member", m.name, m.checkpoint), {})
            _, p, y = probs.labelled(run.dataset_id, run.run_id, "member", m.name, m.checkpoint, "test")
            out[m.name] = ({k: found.get(f"test_{k}") for k in METRICS}, _confusion(p, y, len(choice.labels)))
        if len(choice.members) > 1:
            if choice.built is not None:  # the ensemble made for this export: its numbers are in memory
                found = choice.built.metrics
                _, y = probs.labels(run.dataset_id, "test")
                p = choice.built.probs.get("test")
            else:
                found = stored.get(("ensemble", "ensemble", choice.strategy), {})
                _, p, y = probs.labelled(run.dataset_id, run.run_id, "ensemble", "ensemble", choice.strategy, "test")
            out["ensemble"] = ({k: found.get(f"test_{k}") for k in METRICS}, _confusion(p, y, len(choice.labels)))
    return out


def _confusion(probs, labels, k: int) -> np.ndarray | None:
    if probs is None or labels is None or len(probs) == 0 or len(probs) != len(labels):
        return None
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (labels, np.asarray(probs).argmax(axis=1)), 1)
    return m


def card_metrics(reader, run, choice: Choice) -> dict[str, dict[str, float | None]]:
    """{member or "ensemble": {accuracy, f1_macro, log_loss}} on the test split, from the store."""
    return {name: metrics for name, (metrics, _) in _test(reader, run, choice).items()}


def model_card(reader, run, choice: Choice, seeds: list[dict] | None = None) -> tuple[str, dict]:
    """(README.md's text, test metrics) of `run` exported under `choice`. `seeds`: for a run with
    replicas, the rows `runner compare` gives over them (runner.analysis.compare_seeds, `records()`):
    each strategy's test accuracy over seeds and its paired interval against the run's selection."""
    tests = _test(reader, run, choice)
    labels = list(choice.labels)
    counts = reader.label_counts(run.dataset_id)
    head = "ensemble" if "ensemble" in tests else choice.members[0].name
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             "tags:", "- text-classification", "- runner", "- ensemble" if len(choice.members) > 1 else "- runner-export",
             "labels:"] + [f"- {json.dumps(x)}" for x in labels]
    lines += ["model-index:", f"- name: {json.dumps(run.name)}", "  results:", "  - task:",
              "      type: text-classification", "    dataset:", f"      name: {json.dumps(run.dataset_id)}",
              f"      type: {json.dumps(str(run.spec.get('data', {}).get('source', 'unknown')))}",
              "      split: test", "    metrics:"]
    for k in METRICS:
        value = tests[head][0].get(k)
        if value is not None:
            lines += [f"    - type: {HF_TYPES[k]}", f"      name: test {k}", f"      value: {value!r}"]
    lines += ["---", ""]
    n = len(choice.members)
    lines += [f"# {run.name}", "",
              f"{'An ensemble of ' + str(n) + ' text classifiers' if n > 1 else 'A text classifier'} trained by "
              f"runner (run `{run.run_id}`), exported with strategy `{choice.strategy}`. Load it with "
              "`runner.load(DIR)`, `runner predict DIR INPUT` or `runner serve DIR`; each folder under `members/` "
              "also loads in plain transformers (`pipeline(\"text-classification\", model=...)`).", ""]
    lines += ["## Results on the test split", "", "| model | checkpoint | weight | " + " | ".join(METRICS) + " |",
              "|---|---|---:|" + "---:|" * len(METRICS)]
    weights = dict(zip([m.name for m in choice.members], choice.weights))
    checkpoints = {m.name: m.checkpoint for m in choice.members}
    for name, (metrics, _) in tests.items():
        cells = [_num(metrics.get(k)) for k in METRICS]
        lines.append(f"| {name} | {checkpoints.get(name, choice.strategy)} | "
                     f"{_num(weights[name]) if name in weights else choice.method} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, (_, matrix) in tests.items():
        if matrix is None:
            continue
        lines += [f"Confusion matrix of {name} (rows: true label, columns: predicted):", "",
                  "| true \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        lines += [f"| {labels[i]} | " + " | ".join(str(int(c)) for c in row) + " |" for i, row in enumerate(matrix)]
        lines.append("")
    lines += ["## Data", "", f"Dataset id `{run.dataset_id}` (source `{run.spec.get('data', {}).get('source')}`).", "",
              "| split | examples | " + " | ".join(labels) + " |", "|---|---:|" + "---:|" * len(labels)]
    for split in [s for s in SPLITS if s in counts] + sorted(set(counts) - set(SPLITS)):
        c = counts[split] + [0] * (len(labels) - len(counts[split]))
        total = sum(c)
        lines.append(f"| {split} | {total} | " + " | ".join(f"{x / total:.1%}" for x in c) + " |")
    cal = choice.ensemble_calibration
    lines += ["", "## Selection and calibration", "",
              f"Each member's checkpoint is the one strategy `{choice.strategy}` picks (the spec's selection metric: "
              f"`{run.selection_metric}`, {'higher' if run.greater_is_better else 'lower'} is better, on the "
              f"validation split); ensemble weights: {choice.method}.",
              ""] + _over_seeds(seeds, run.selected_strategy) + [f"Calibration: {_calibration(cal)}.", ""]
    lines += ["## Intended use and limitations", "",
              f"Classifies texts into {', '.join(labels)}, for texts like those of the dataset above. The figures are "
              "measured on its held-out test split; texts from another source, language or time may score lower. "
              f"Texts longer than {choice.run.get('max_length')} tokens are truncated. Check the class shares and the "
              "confusion matrix before relying on the rarest classes.", ""]
    env = reader.environment(run.run_id)
    versions = {k: v for k, v in env.items() if k not in ("host", "spec")}
    lines += ["## Versions", "", f"Exported by runner {__version__}; trained with:", "",
              "| package | version |", "|---|---|"] + [f"| {k} | {v} |" for k, v in versions.items()] + [""]
    lines += ["## Spec", "", f"Spec hash `{run.spec_hash}`:", "", "```toml",
              tomli_w.dumps(_plain(dict(run.spec))).rstrip(), "```", ""]
    return "\n".join(lines), {name: metrics for name, (metrics, _) in tests.items()}


def _over_seeds(rows: list[dict] | None, baseline: str) -> list[str]:
    """Why the strategy: each strategy's test accuracy over the run's replicas, and its difference from
    the run's selection with the paired bootstrap interval (as `runner compare RUN` shows them)."""
    spreads = [r for r in rows or () if r["kind"] == "seeds" and r["replicas"]]  # strategies with numbers
    if not spreads:
        return []
    diffs = {r["strategy"]: r for r in rows if r["kind"] == "bootstrap"}
    level = next((r["level"] for r in diffs.values() if r.get("level")), 0.95)
    out = [f"Over the run's {max(r['replicas'] for r in spreads)} replicas (the same spec and data, other seeds), "
           f"each strategy's test accuracy (mean ± sample sd) and its difference from `{baseline}`, the spec's "
           f"selection, with a paired bootstrap {level:.0%} interval over seeds and test examples:", "",
           "| strategy | replicas | test accuracy | Δ accuracy | interval |", "|---|---:|---:|---:|---:|"]
    for r in spreads:
        acc, sd = r.get("test_accuracy"), r.get("test_accuracy_sd")
        d = diffs.get(r["strategy"])
        delta = interval = ""
        if d is not None and d.get("test_accuracy_diff") is not None:
            delta = f"{d['test_accuracy_diff']:+.4f}"
            interval = f"[{d['test_accuracy_diff_low']:+.4f}, {d['test_accuracy_diff_high']:+.4f}]"
        mean = "" if acc is None else f"{acc:.4f}" + ("" if sd is None else f" ± {sd:.4f}")
        name = f"**{r['strategy']}**" if r["strategy"] == baseline else r["strategy"]
        out.append(f"| {name} | {r['replicas']} | {mean} | {delta} | {interval} |")
    return out + [""]


def _calibration(cal) -> str:
    if cal is None:
        return "none (the probabilities are the models' own)"
    bias = "" if cal.bias is None else f", per-class bias {list(cal.bias)}"
    return f"{cal.method}, temperature {cal.temperature:.4g}{bias}; `--calibrated` applies it"


def _num(x) -> str:
    return "" if x is None else f"{float(x):.4f}"


def _plain(value):
    """The stored spec as TOML can hold it (no None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value if v is not None]
    return value
