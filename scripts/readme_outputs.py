"""Regenerate (or check) the output blocks of README.md from a real quickstart run.

Every output block the README shows is preceded by a marker line `<!-- output: NAME -->`; this script
runs the quickstart exactly as a user does (`runner apply specs/quickstart.toml` in a fresh folder
holding copies of `specs/`, `plugins/` and `examples/`), then the command or query each block shows, and writes
what they print into the README. SQL blocks run the ```sql block just above the marker.

    python scripts/readme_outputs.py           # rewrite README.md's output blocks
    python scripts/readme_outputs.py --check   # exit 1 and show the difference if README is stale

`tests/test_docs.py` runs the check. Numbers are compared with a tolerance of 0.003 (a few test
examples) in check mode, so a machine whose float kernels round differently does not fail it, while a
changed default, strategy or table layout does. Training runs on one CPU thread (torch.set_num_threads(1)),
wherever the script runs: float sums taken over another number of threads round differently, and over a
few epochs that moves the fourth decimal by more than the tolerance (a quickstart on more threads prints
numbers that close to the README's, not the same).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported: see the docstring
os.environ["TOKENIZERS_PARALLELISM"] = "false"

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = re.compile(r"<!-- output: ([\w-]+) -->\n```[a-z]*\n(.*?)```", re.S)
NUMBER = re.compile(r"-?\d+\.\d+%?|-?\d+")
TOLERANCE = 0.003


@contextmanager
def quickstart_folder():
    """A fresh folder with specs/, plugins/ and examples/ copied in, as a user's clone has them; cwd inside."""
    old = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="runner-readme-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "specs", root / "specs")
        shutil.copytree(REPO / "plugins", root / "plugins")
        shutil.copytree(REPO / "examples", root / "examples")
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(old)


def cli(*args: str) -> tuple[str, str]:
    from typer.testing import CliRunner

    from runner.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise SystemExit(f"`runner {' '.join(args)}` exited {result.exit_code}:\n{result.stderr}{result.stdout}")
    return result.stdout, result.stderr


def plain(cols: list[str], rows: list[tuple]) -> str:
    """Query results as the README shows them: aligned columns, two spaces apart."""
    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    table = [list(cols)] + [[cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table) + "\n"


def sql_before(readme: str, name: str) -> str:
    """The ```sql block that ends just before the marker of `name`."""
    at = readme.index(f"<!-- output: {name} -->")
    blocks = list(re.finditer(r"```sql\n(.*?)```", readme[:at], re.S))
    if not blocks:
        raise SystemExit(f"README: no ```sql block before <!-- output: {name} -->")
    return blocks[-1].group(1)


def load_example(folder: str) -> str:
    """What README's `runner.load` example prints (it runs in this process, as a user's script would)."""
    import runner

    model = runner.load(folder)
    texts = ["The plot was absolutely amazing, a must-see.", "Sure, the cast was rather dull, but the ending "
             "was stunning.", "The dialogue was mostly solid, but the action scenes were awful."]
    lines = [f"labels: {model.labels}", f"weights: {', '.join(f'{m} {w:.3f}' for m, w in model.weights.items())}",
             f"predict: {model.predict(texts)}"]
    lines += [f"predict_proba[{i}]: [{', '.join(f'{x:.4f}' for x in row)}]"
              for i, row in enumerate(model.predict_proba(texts))]
    return "\n".join(lines) + "\n"


def steps() -> dict[str, Callable[[], str]]:
    """Block name -> what produces it. They run in the order the README shows them, as a reader types
    them, so a later section's runs (quickstart-alpha, the refit) are not yet in the store when an
    earlier block runs."""
    def apply():
        out, err = cli("apply", "specs/quickstart.toml")
        return next(line for line in err.splitlines() if line.startswith("Ensemble over")) + "\n" + out

    def predict():
        out, err = cli("predict", "quickstart", "examples/new_reviews.csv", "--output", "predictions.csv")
        return err + out

    def export():
        out, err = cli("export", "quickstart", "model")
        return out + err

    def apply_alpha():
        out, err = cli("apply", "specs/quickstart_alpha.toml")
        return next(line for line in err.splitlines() if line.startswith("Ensemble over")) + "\n"

    def calibrate():
        out, err = cli("calibrate", "quickstart-alpha", "--method", "temperature+bias")
        return err + out

    def refit():
        out, err = cli("refit", "quickstart")
        said = [line for line in err.splitlines() if line.startswith(("Refit ", "Ensemble"))]
        return "\n".join(said) + "\n" + out

    def apply_adapt():
        out, err = cli("apply", "specs/quickstart_adapt.toml")
        said = [re.sub(r" done in \d+ s ", " done ", line) for line in err.splitlines()
                if line.startswith(("adapt:", "Ensemble over"))]
        return "\n".join(said) + "\n" + out

    return {
        "apply": apply,
        "compare": lambda: cli("compare", "quickstart")[0],
        "compare-markdown": lambda: cli("compare", "quickstart", "--strategies", "best_eval_accuracy",
                                        "--format", "markdown")[0],
        "ensemble": lambda: cli("ensemble", "quickstart", "--weights", "0.5,0.3,0.2")[0],
        "predict": predict,
        "predict-csv": lambda: "".join(Path("predictions.csv").read_text().splitlines(True)[:4]),
        "export": export,
        "load": lambda: load_example("model"),
        "apply-alpha": apply_alpha,
        "calibrate": calibrate,
        "refit": refit,
        "compare-refit": lambda: cli("compare", "quickstart", "--strategies", "best_eval_accuracy,swa")[0],
        "apply-sweep": lambda: cli("apply", "specs/sweep_quickstart.toml")[0],
        "apply-adapt": apply_adapt,
        "compare-adapt": lambda: cli("compare", "quickstart", "quickstart-adapt")[0],
    }


def outputs(readme: str) -> dict[str, str]:
    """Run the quickstart and everything the README shows, in README order; {block name: text}."""
    import torch

    from runner.store import Store

    torch.set_num_threads(1)
    found = {}
    produce = steps()
    with quickstart_folder():
        for name in re.findall(r"<!-- output: ([\w-]+) -->", readme):
            if name.startswith("sql-"):
                cols, rows = Store("results.duckdb").open_read().query(sql_before(readme, name))
                found[name] = plain(cols, rows)
            elif name in produce:
                found[name] = produce[name]()
    return {k: "\n".join(line.rstrip() for line in v.splitlines()) + "\n" for k, v in found.items()}


def same(expected: str, actual: str) -> bool:
    """Equal up to numbers within TOLERANCE (and percentages within TOLERANCE * 100 points)."""
    if NUMBER.sub("#", expected) != NUMBER.sub("#", actual):
        return False
    for a, b in zip(NUMBER.findall(expected), NUMBER.findall(actual)):
        pct = a.endswith("%")
        x, y = float(a.rstrip("%")), float(b.rstrip("%"))
        if "." not in a:  # integers (epochs, counts) must match exactly
            if x != y:
                return False
        elif abs(x - y) > TOLERANCE * (100 if pct else 1) + 1e-12:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting")
    args = parser.parse_args()
    readme = README.read_text(encoding="utf-8")
    names = [m.group(1) for m in MARKER.finditer(readme)]
    generated = outputs(readme)
    missing = [n for n in names if n not in generated]
    if missing:
        raise SystemExit(f"README has output markers this script does not produce: {missing}")
    if args.check:
        stale = []
        for m in MARKER.finditer(readme):
            if not same(m.group(2), generated[m.group(1)]):
                stale.append(m.group(1))
                sys.stdout.writelines(difflib.unified_diff(
                    m.group(2).splitlines(True), generated[m.group(1)].splitlines(True),
                    f"README.md ({m.group(1)})", "generated"))
        if stale:
            print(f"\nREADME.md output blocks out of date: {', '.join(stale)}; run python scripts/readme_outputs.py")
            return 1
        print(f"README.md: {len(names)} output blocks match a fresh quickstart run")
        return 0

    def replace(m: re.Match) -> str:
        fence = m.group(0).split("\n", 2)[1]
        return f"<!-- output: {m.group(1)} -->\n{fence}\n{generated[m.group(1)]}```"

    README.write_text(MARKER.sub(replace, readme), encoding="utf-8")
    print(f"README.md: rewrote {len(names)} output blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
