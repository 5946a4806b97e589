"""A finished run's numbers for its parent tracker run: `runner compare`'s records (runner.api computes
them with runner.analysis.compare) as flat metric names, and the files its artifacts are written to.

Names: `<strategy>/<member>/<column>` (`best_eval_accuracy/bert-h64/test_accuracy`, `swa/ensemble/
test_log_loss`, `.../epoch` for the epoch a strategy picked), `weights/<ensemble>/<strategy>/<member>`
for the stored ensembles' weights and `calibration/<member>/<checkpoint>/<method>/<column>` for
`runner calibrate`'s before (`none`) and after numbers.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from runner.track.base import tracking_dir

NAMES = ("strategy", "kind", "member", "checkpoint")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")  # MLflow's metric names take these characters only


def _name(*parts: str) -> str:
    return "/".join(_UNSAFE.sub("_", str(p)) for p in parts)


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def table_metrics(records: list[dict], weights: list[dict], calibrations: list) -> dict[str, float]:
    """Flat metrics of compare's `records` (member and ensemble rows), the rows of `ensemble_weights`
    and the run's `Calibrated` results."""
    out: dict[str, float] = {}
    for rec in records:
        if rec.get("kind") not in ("member", "ensemble"):  # a replica's rows over seeds: compare's own table
            continue
        for column, value in rec.items():
            v = _number(value)
            if column not in NAMES and v is not None and not column.startswith("true_share_"):
                out[_name(rec["strategy"], rec["member"], column)] = v
    for w in weights:
        out[_name("weights", w["ensemble"], w["strategy"], w["member"])] = float(w["weight"])
    for c in calibrations:
        prefix = ("calibration", c.member, c.checkpoint)
        out[_name(*prefix, c.method, "temperature")] = float(c.temperature)
        for key, value in c.metrics.items():
            column, _, method = key.partition("@")
            v = _number(value)
            if v is not None:
                out[_name(*prefix, method, column)] = v
    return out


def results_dir(store_path: str | Path, run_id: str) -> Path:
    """`tracking/results/<run_id>/` beside the store: the files logged as the run's artifacts."""
    folder = tracking_dir(store_path) / "results" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_csv(path: Path, records: list[dict]) -> None:
    """compare's records as `runner compare --format csv` writes them: a header of every key, in order."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(records)
