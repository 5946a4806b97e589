"""The metric columns `runner compare` can show: their names (`--columns`, the keys of `--format json`),
their short headers, where each value comes from and which direction is better.

A column is `<split>_<metric>` with the split as a person reads it (`eval_` for valid, `test_`): every
registered metric (`accuracy`, `f1_macro`, `log_loss`, a plugin's), `objective` (the training loss
as trained, focal or cross-entropy with its smoothing: the store's metric `loss`, which only members
have), plus `tvd` (distance of the predicted class distribution from the true one) and `shares`
(one column per class: the share predicted). `log_loss` (the NLL of the stored probabilities, which
every member, SWA checkpoint and ensemble has) and `objective` are different numbers and are never
shortened into one another.
"""

from __future__ import annotations

from runner.core.records import RunRecord
from runner.errors import InputError

OBJECTIVE = "objective"  # the store's metric `loss`: the training objective
TVD, SHARES = "tvd", "shares"
BUILTIN_METRICS = ("accuracy", "f1_macro", "log_loss")
# the columns of `--format json`/`csv` (and of the table with --columns ...all): the numbers compare always had
RECORD_COLUMNS = ("eval_accuracy", "eval_log_loss", "test_accuracy", "test_f1_macro", "test_log_loss", TVD)
SHORT = {"accuracy": "acc", "f1_macro": "F1", "log_loss": "log\nloss", OBJECTIVE: "objective"}
MAX_SHARE_CLASSES = 6  # more classes than this: the share columns only with --columns (they would not fit)


def metric_of(column: str) -> tuple[str, str]:
    """`"eval_log_loss"` -> `("eval", "log_loss")`."""
    prefix, _, metric = column.partition("_")
    return prefix, metric


def value(metrics: dict, column: str) -> float | None:
    """The value of `column` in a row's stored metrics ({"eval_accuracy": ...}); tvd and shares are
    computed by compare itself."""
    prefix, metric = metric_of(column)
    return metrics.get(f"{prefix}_loss" if metric == OBJECTIVE else column)


def header(column: str) -> str:
    """Two or three short lines: `eval` / `acc`, `test` / `log` / `loss`, `eval` / `objective`."""
    if column == TVD:
        return TVD
    prefix, metric = metric_of(column)
    return f"{prefix}\n{SHORT.get(metric, metric.replace('_', chr(10)))}"


def lower_is_better(column: str, registry) -> bool:
    prefix, metric = metric_of(column)
    if column == TVD or metric in ("log_loss", OBJECTIVE):
        return True
    comp = registry.metric(metric)
    return comp is not None and not comp.greater_is_better


def _plugin_metric(run: RunRecord, registry) -> str | None:
    """The selection metric when it is a metric of its own (a plugin's), else None."""
    metric = run.selection_metric.removeprefix("eval_")
    if metric not in ("loss", *BUILTIN_METRICS) and registry.metric(metric) is not None:
        return metric
    return None


def record_columns(run: RunRecord, registry) -> tuple[str, ...]:
    """The columns of `--format json`/`csv`: the base ones plus the selection metric's when it is a
    plugin's (eval_ after eval_accuracy, test_ after the test columns)."""
    extra = _plugin_metric(run, registry)
    if extra is None:
        return RECORD_COLUMNS
    return RECORD_COLUMNS[:2] + (f"eval_{extra}",) + RECORD_COLUMNS[2:5] + (f"test_{extra}",) + RECORD_COLUMNS[5:]


def shown_columns(run: RunRecord, registry) -> tuple[str, ...]:
    """The table's default: the validation number the spec selects by, test accuracy, macro-F1 and
    log-loss (and the plugin selection metric's test number), tvd, and the class shares when they fit."""
    metric = run.selection_metric.removeprefix("eval_")
    selection = f"eval_{OBJECTIVE}" if metric == "loss" else f"eval_{metric}"
    extra = _plugin_metric(run, registry)
    cols = [selection, "test_accuracy", "test_f1_macro", "test_log_loss"]
    cols += [f"test_{extra}"] if extra else []
    cols += [TVD] + ([SHARES] if run.num_labels <= MAX_SHARE_CLASSES else [])
    return tuple(dict.fromkeys(cols))


def known_columns(registry) -> list[str]:
    metrics = list(dict.fromkeys([*BUILTIN_METRICS, *registry.names("metrics"), OBJECTIVE]))
    return [f"{p}_{m}" for p in ("eval", "test") for m in metrics] + [TVD, SHARES]


def parse(text: str, registry) -> tuple[str, ...]:
    """`--columns eval_log_loss,test_accuracy,shares` as columns; InputError naming an unknown one."""
    wanted = [c.strip() for c in text.split(",") if c.strip()]
    known = known_columns(registry)
    unknown = [c for c in wanted if c not in known]
    if unknown or not wanted:
        raise InputError(f"--columns {text!r}: " + (f"no column {unknown[0]!r}; " if unknown else "name at least one; ")
                         + f"one or more of: {', '.join(known)}")
    return tuple(dict.fromkeys(wanted))
