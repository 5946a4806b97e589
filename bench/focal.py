"""Which focal loss should `[loss] modulation` default to? Both variants trained by runner, same seeds.

For each language (synthetic `en` and `ko`, sized like the quickstart), the quickstart's first member
(focal loss, gamma 2, alpha 1, label smoothing 0.1; see bench/parity.py for the rest) is trained
`--seeds` times with `modulation = "per_class"` (alpha_c (1 - p_c)^gamma inside the smoothed sum:
runner's loss before the option existed) and `--seeds` times with `modulation = "true_class"` (the
smoothed cross-entropy times alpha_y (1 - p_y)^gamma: the usual form, the notebook's), through the real
CLI (`runner apply`, `repeats`), on one store. Replica k of both uses member seed 13 + 1000 k, so the
comparison is paired by seed (same initial weights, same batches).

Reported: mean selected-checkpoint test accuracy and log-loss of each variant, and true_class -
per_class with a 95% t-interval of the per-seed differences and runner.analysis.stats' paired bootstrap over
seeds x test examples.

    python bench/focal.py                    # en and ko, 10 seeds each
    python bench/focal.py --languages en --seeds 5

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from parity import run_cli, spec_text, stored_replicas, t_interval

VARIANTS = ("per_class", "true_class")


def log_loss(store: Path, reps: list[dict]) -> list[float]:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        return [con.execute("SELECT value FROM metrics WHERE run_id = ? AND kind = 'member' AND member = ? AND "
                            "checkpoint = ? AND split = 'test' AND name = 'log_loss'",
                            [r["run_id"], r["member"], r["checkpoint"]]).fetchone()[0] for r in reps]
    finally:
        con.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="focal modulation per_class vs true_class, paired over seeds")
    ap.add_argument("--languages", nargs="+", default=["en", "ko"], choices=["en", "ko"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--size", type=int, default=None)
    opts = ap.parse_args(argv)

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from runner.analysis.stats import paired_bootstrap

    console = Console(width=max(Console().width, 150))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    out = []
    with tempfile.TemporaryDirectory(prefix="runner-focal-") as tmp:
        for language in opts.languages:
            work = Path(tmp) / language
            (work / "specs").mkdir(parents=True)
            store = work / "results.duckdb"
            reps, secs = {}, {}
            for v in VARIANTS:
                spec = work / "specs" / f"focal-{language}-{v}.toml"
                spec.write_text(spec_text(language, opts.seeds, opts.size, modulation=v, name=f"focal-{language}-{v}"))
                secs[v] = run_cli(["apply", str(spec), "--store", str(store)], env)
                reps[v] = stored_replicas(store, f"focal-{language}-{v}")[0]
            labels = reps["true_class"][0]["labels"]
            assert [r["seed"] for r in reps["per_class"]] == [r["seed"] for r in reps["true_class"]]
            acc = {v: [r["test_accuracy"] for r in reps[v]] for v in VARIANTS}
            ll = {v: log_loss(store, reps[v]) for v in VARIANTS}
            diffs = [t - p for t, p in zip(acc["true_class"], acc["per_class"])]
            mean, sd, low, high = t_interval(diffs)
            a, b = (np.stack([(r["pred"] == labels).astype(np.float64) for r in reps[v]]) for v in VARIANTS[::-1])
            boot = paired_bootstrap(a, b)
            r = {"language": language, "seeds": len(diffs), "examples": int(len(labels)),
                 **{f"{v}_accuracy": float(np.mean(acc[v])) for v in VARIANTS},
                 **{f"{v}_accuracy_sd": float(np.std(acc[v], ddof=1)) for v in VARIANTS},
                 **{f"{v}_log_loss": float(np.mean(ll[v])) for v in VARIANTS},
                 "difference": mean, "difference_sd": sd, "t95": [low, high], "bootstrap95": [boot.low, boot.high],
                 "seconds": secs,
                 "per_seed": [{"seed": x["seed"], **{v: reps[v][i]["test_accuracy"] for v in VARIANTS}}
                              for i, x in enumerate(reps["per_class"])]}
            out.append(r)
            for s in r["per_seed"]:
                console.print(f"{language} seed {s['seed']}: per_class {s['per_class']:.4f}, "
                              f"true_class {s['true_class']:.4f}", highlight=False)
    table = Table(title="focal modulation · selected-checkpoint test accuracy (log-loss), mean over seeds")
    for col in ("data", "seeds", "per_class", "true_class", "true - per", "95% t", "95% bootstrap"):
        table.add_column(col, justify="right")
    for r in out:
        table.add_row(f"synthetic {r['language']} ({r['examples']} test)", str(r["seeds"]),
                      f"{r['per_class_accuracy']:.4f} ({r['per_class_log_loss']:.3f})",
                      f"{r['true_class_accuracy']:.4f} ({r['true_class_log_loss']:.3f})",
                      f"{100 * r['difference']:+.2f} pt",
                      f"[{100 * r['t95'][0]:+.2f}, {100 * r['t95'][1]:+.2f}]",
                      f"[{100 * r['bootstrap95'][0]:+.2f}, {100 * r['bootstrap95'][1]:+.2f}]")
    console.print(table)
    print(json.dumps({"bench": "focal", "results": out}))


if __name__ == "__main__":
    main()
