"""Regenerate (or check) the output blocks of README.md and the docs pages from a real quickstart run.

Every output block a page shows is preceded by a marker line `<!-- output: NAME -->`; this script
runs the quickstart exactly as a user does (`runner apply specs/quickstart.toml` in a fresh folder
holding copies of `specs/`, `plugins/` and `examples/`), then the command or query each block shows, and writes
what they print into the pages. SQL blocks run the ```sql block just above the marker, in the page
that holds it. The blocks run in the order the pages show them (the files in the order given, each
from the top); a name may appear on several pages and is then the same output on each. By default the
pages are README.md, then docs/**/*.md in the order mkdocs.yml's nav lists them (the order a reader
follows the tutorial and the how-to guides, each continuing from the store the one before left).

    python scripts/readme_outputs.py                    # rewrite the output blocks of README.md and docs/
    python scripts/readme_outputs.py --check            # exit 1 and show the difference if a block is stale
    python scripts/readme_outputs.py --check README.md docs/how-to/sweeps.md   # the markers of these files
    python scripts/readme_outputs.py --dump out.json --threads 2   # write the generated blocks, touch no page
    python scripts/readme_outputs.py --check --from out.json       # compare a dump, no training

Training runs on --threads torch threads (default 1, as the README's blocks were made), wherever the
script runs; OMP_NUM_THREADS is set before torch is imported. The commands print as in a 100-column
terminal (COLUMNS=100). About 8 minutes on one thread.

The check (`stale_blocks`, a pure function of a page's text and the generated blocks) compares numbers
within tolerances measured across CPU kernel paths and thread counts, and everything else exactly:

- Text. Each compared number (`numbers`: every decimal, and every selected epoch: the N of a
  checkpoint epoch-N, a table's epoch column, a refit's epochs) is masked with the spaces that pad it
  and markdown's bold (a table's best value per column follows the values). What is left must match
  exactly: words, member and strategy names, column headers, the table borders that fix the column
  layout, and all other integers (epochs trained, counts, sizes, trial numbers, ids).
- Numbers. Each must be within the tolerance of its kind in its run (`allowed`). The kind comes from
  where the number sits (RULES): the column header of its table (a box drawn by rich, a markdown
  table, a `runner sql` table, a CSV), a row labelled `bias`, for a sweep's `value` column the metric
  its row or title names, in running text the last kind word before it on its line ("fit weights:
  bert-h64 0.155" is a weight). tests/test_output_check.py checks that every number the README
  compares has a kind. The run is the block's (RUN): the quickstart, its refit, its alpha variant or
  its adapted variant.
- Sweeps (RANKED: apply-sweep, sql-trial-params) by frame, not by value: the median pruner stops a trial
  whose epoch value falls below the others' median (one example flips it), the table ranks trials by
  value, TPE draws the trials after its random start from the values so far, and importances and
  correlations are fitted on whichever trials finished. Their lines must match with every number,
  trial status and sweep run masked, in any order, and the runs (the run id hashes the trial's params)
  must be the same but for at most the tolerated number of trials drawn differently.

Why tolerances: float kernels differ between CPUs (the vector width ATen, MKL and oneDNN pick, the
summation order of another thread count); a last-bit difference grows over a few epochs of training;
then an example near a tie between two classes changes sides, a selection between two epochs of
near-equal validation accuracy picks the other one, a pruner decides otherwise. On the same machine,
thread count and library versions the numbers are bit-identical (tests/run/test_determinism.py).

Measured on a 2-core CPU (Intel Xeon with AVX-512; torch 2.13.0 and requirements.lock): six
configurations, the README's blocks as committed and five runs of this script, one command each
(~8-25 minutes; ATEN_CPU_CAPABILITY must be set before torch is imported, and stands in for other CPUs):

    python scripts/readme_outputs.py --dump t1.json                       # 1 thread, AVX-512 kernels
    python scripts/readme_outputs.py --dump t2.json --threads 2
    ATEN_CPU_CAPABILITY=avx2 python scripts/readme_outputs.py --dump avx2.json
    ATEN_CPU_CAPABILITY=default python scripts/readme_outputs.py --dump scalar.json
    MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=AVX2 python scripts/readme_outputs.py --dump mkl.json
    python scripts/readme_drift.py README.md t1.json t2.json avx2.json scalar.json mkl.json --json

The five dumps are kept in tests/drift/; tests/test_output_check.py checks that they pass the check
against each other and that MEASURED covers them.
The largest difference over all pairs of them (MEASURED; counted kinds in examples of the block's n,
which readme_drift.py takes from the rounded prints, so 2.25 is two examples on 451):

    kind                                         quickstart   refit    alpha    adapt
    share: accuracy, class share, tvd (examples)   2.25       10.8     22.95    10.03
    delta: a difference of shares, its interval    0.99        -        -        9.99
    f1_balanced: F1 macro, balanced accuracy       0.0027     0.0162    -       0.0289
    loss: log-loss, eval loss                      0.0009     0.0137   0.0152   0.0284
    weight: fitted ensemble weight                 0.003      0.003    0.069    0.146
    probability: predicted probability             0.0008      -        -        -
    selected_epoch                                 0          0        1        1
    temperature: calibrate's T                     -          -       0.088      -
    ece: calibration error                         -          -       0.0257     -
    bias: calibrate's per-class bias               -          -       0.28       -
    bootstrap_p: P(delta <= 0) of a bootstrap      -          -        -       0.469
    mlm_loss: held-out masked-LM loss              -          -        -       0
    sweep: trials drawn differently (of 12)        2

The tolerance is MARGIN (2) times that: a counted kind rounded up to whole examples of the block's n
(451 test and 450 valid examples, 300 for `runner predict`'s reviews), at least one example; every
decimal at least one unit of its last printed digit. So the quickstart's accuracies and class shares
are checked to 5 examples (0.011; 0.017 on predict's 300 reviews), its F1 to 0.0054, log-loss to
0.0018, weights to 0.006, probabilities to 0.0016, its selected epochs exactly; an accuracy moved by
0.02 fails. The other runs sit nearer ties (a selection flip moves a whole row): their tolerances are
wide, a check of their text and layout more than of their values. Measure again after a change of
torch, the lock or the quickstart, and replace MEASURED with readme_drift.py's --json.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MARKER = re.compile(r"<!-- output: ([\w-]+) -->\n```[a-z]*\n(.*?)```", re.S)

# Kinds of number, by what they count. A "counted" kind moves in steps of whole examples: a share of
# the block's n examples (accuracy, class shares, tvd, agreement) or a difference of two (and its
# bootstrap interval's bounds), compared in examples. The others are compared in their own units.
COUNTED = {"share", "delta"}
# n of a block's counted numbers: the quickstart's test split has 451 examples and its valid split 450
# (the smaller of the two is used); `runner predict` scores the 300 reviews of examples/new_reviews.csv.
EXAMPLES = {"predict": 300, "sql-agreement": 300}
DEFAULT_EXAMPLES = 450
# The blocks show what a terminal of this many columns shows (runner's tables fit it).
WIDTH = 100

# The run a block's numbers come from. Runs differ in how many examples sit near a tie between two
# classes, so drift is measured, and tolerated, per run: the inverse-frequency alpha run predicts the
# minority class at near-ties and moves further than the quickstart. A block not named here is the
# quickstart's. compare-refit and compare-adapt also show quickstart rows.
RUN = {"apply-alpha": "alpha", "calibrate": "alpha", "refit": "refit", "compare-refit": "refit",
       "apply-adapt": "adapt", "compare-adapt": "adapt", "sql-adapt-losses": "adapt",
       "apply-sweep": "sweep", "sql-trial-params": "sweep"}

# Blocks compared by frame, not by value (see the docstring): a sweep's pruning, ranking and TPE draws
# follow near-tie values.
RANKED = {"apply-sweep", "sql-trial-params"}

# The largest difference seen per run and kind (the docstring's table: scripts/readme_drift.py --json
# over six configurations). Counted kinds in examples, the others in their units; "redrawn": sweep
# trials whose run (params) differ.
MEASURED: dict[str, dict[str, float]] = {
    "quickstart": {"delta": 0.99, "f1_balanced": 0.0027, "loss": 0.0009, "probability": 0.0008,
                   "selected_epoch": 0, "share": 2.25, "weight": 0.003},
    "refit": {"f1_balanced": 0.0162, "loss": 0.0137, "selected_epoch": 0, "share": 10.8, "weight": 0.003},
    "alpha": {"bias": 0.28, "ece": 0.0257, "loss": 0.0152, "selected_epoch": 1, "share": 22.95,
              "temperature": 0.088, "weight": 0.069},
    "adapt": {"bootstrap_p": 0.469, "delta": 9.99, "f1_balanced": 0.0289, "loss": 0.0284, "mlm_loss": 0,
              "selected_epoch": 1, "share": 10.03, "weight": 0.146},
    "sweep": {"redrawn": 2},
}
MARGIN = 2.0


def tolerance(kind: str, name: str) -> float:
    """The largest difference allowed for a number of `kind` in block `name`, in the number's own unit
    (a fraction, not a percentage); for "redrawn", a number of trials. MARGIN times the largest seen in
    the block's run; a counted kind at least one example."""
    seen = MEASURED.get(RUN.get(name, "quickstart"), {}).get(kind, 0.0)
    if kind in COUNTED:
        return max(1, math.ceil(MARGIN * seen)) / EXAMPLES.get(name, DEFAULT_EXAMPLES)
    if kind in ("redrawn", "selected_epoch"):
        return math.ceil(MARGIN * seen)
    return MARGIN * seen


def allowed(number: "Number", name: str) -> float:
    """The tolerance of a number: its kind's, but at least one unit of its last printed digit (a value
    near a rounding boundary flips that digit with any last-bit difference). A selected epoch has no
    digit to round: a kind never seen to move there is compared exactly."""
    if number.kind == "selected_epoch":
        return tolerance(number.kind, name)
    digits = len(number.text.rstrip("%").split(".")[1])
    return max(tolerance(number.kind, name), 10.0 ** -digits / (100 if number.text.endswith("%") else 1))


# How a number's context names its kind: the first rule that matches a column header (or a row's
# label, or the running text before the number) wins. Ordered from the most specific.
RULES: list[tuple[str, re.Pattern]] = [(k, re.compile(p, re.I)) for k, p in [
    ("exact", r"\(true\s*$"),                        # a true class share in a header: the data's, exact
    ("exact", r"\bw=[\d.,]*$|^ensemble$"),            # given weights, in an ensemble's name (w=0.5,0.3,0.2)
    ("bootstrap_p", r"P\(Δ\s*≤\s*0\)"),                  # a bootstrap probability, not a share of examples
    ("probability", r"predict_proba|\bp_\w+"),
    ("weight", r"\bweights?\b"),
    ("temperature", r"^T$"),
    ("ece", r"\bece\b"),
    ("importance", r"\bimportance\b"),
    ("correlation", r"\bcorr"),
    ("param", r"\bloss\.(gamma|label_smoothing|alpha)"),
    ("mlm_loss", r"mlm[ _]loss"),
    ("loss", r"log[_-]loss|\beval_lo|\btest_lo|\bloss\b"),
    ("f1_balanced", r"f1|balanced"),               # a mean over classes: one example moves it by 1/(4 n_class)
    ("delta", r"Δ|interval|gain"),                   # a difference of two shares, or its bootstrap bounds
    ("share", r"acc|_ac…|agree|tvd|best: trial \d+ \($"),
]]


# --- the run: the quickstart as a reader types it -------------------------------------------------

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


def sql_before(page: str, name: str) -> str:
    """The ```sql block that ends just before the marker of `name` in a page."""
    at = page.index(f"<!-- output: {name} -->")
    blocks = list(re.finditer(r"```sql\n(.*?)```", page[:at], re.S))
    if not blocks:
        raise SystemExit(f"no ```sql block before <!-- output: {name} -->")
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


# --- the comparison: pure functions of text ------------------------------------------------------

FLOAT = re.compile(r"(?<![\w.+-])[-+]?\d+\.\d+%?(?![\w.])")
# what may be a compared number: a decimal (signed, or a percentage), an integer, or the N of a
# checkpoint named epoch-N
TOKEN = re.compile(r"(?<![\w.+-])[-+]?\d+(?:\.\d+)?%?(?![\w.])|(?<=\bepoch-)\d+\b")
ANY_NUMBER = re.compile(r" *(?<![\w.+-])[-+]?\d+(?:\.\d+)?%?(?![\w.]) *")
RUN_NAME = re.compile(r"\b[\w-]+-t\d+-[0-9a-f]{8}\b")  # a sweep trial's run: <name>-t<trial>-<id>
STATUS = re.compile(r"\b(finished|pruned|failed|running)\b")
# An integer is compared exactly, but for a selected epoch: chosen from near-tie validation values (the
# checkpoint epoch-N, a table's epoch column, a refit's epochs by its parent's strategy).
SELECTED_HEADER = re.compile(r"^(epoch|best_epoch|ep)$")
RULE_LINE = re.compile(r"^─{10,}$")  # under the header of a table runner.analysis.tables draws
SELECTED_TEXT = re.compile(r"epochs by [\w-]+:[^;.]*$")
SUFFIX_RULES = [("exact", re.compile(r"^ (KB|MB|GB)\b"))]  # a file size: deterministic


@dataclass
class Number:
    text: str
    kind: str | None  # None: no rule classifies it (compared exactly)
    context: str      # what classified it, for messages
    line: int = 0     # where it sits in its block: line, and span in the line
    start: int = 0
    end: int = 0

    @property
    def value(self) -> float:
        v = float(self.text.rstrip("%"))
        return v / 100 if self.text.endswith("%") else v


def default_pages() -> list[Path]:
    """README.md, then every docs/**/*.md: those mkdocs.yml's nav names in its order, then the rest."""
    nav = re.findall(r"^\s*-\s.*?([\w./-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    pages = sorted(DOCS.rglob("*.md"), key=lambda p: p.relative_to(DOCS).as_posix())
    ordered = [DOCS / name for name in nav if (DOCS / name) in pages]
    return [README, *dict.fromkeys(ordered + pages)]


def markers(text: str) -> list[tuple[str, str]]:
    """(name, block text) of every output block of a page, in page order."""
    return [(m.group(1), m.group(2)) for m in MARKER.finditer(text)]


def skeleton(block: str, name: str) -> str:
    """The block with each compared number (`numbers`), with the spaces that pad it and markdown's bold
    around it (a table's best value per column, which follows the values), replaced by one placeholder
    (`%` and `epoch-` kept): what must match exactly."""
    lines = block.split("\n")
    for n in reversed(numbers(block, name)):
        line, start, end = lines[n.line], n.start, n.end
        if line[max(0, start - 2):start] == "**" and line[end:end + 2] == "**":
            start, end = start - 2, end + 2
        while start > 0 and line[start - 1] == " ":
            start -= 1
        while end < len(line) and line[end] == " ":
            end += 1
        lines[n.line] = line[:start] + "\x00" + ("%" if n.text.endswith("%") else "") + line[end:]
    return "\n".join(lines)


def _by_rules(context: str, latest: bool) -> str | None:
    """The kind `context` names: the first rule that matches it, or with `latest` (running text) the
    rule whose match ends last, i.e. the kind word nearest before the number."""
    best, end = None, -1
    for kind, rule in RULES:
        found = list(rule.finditer(context))
        if found and not latest:
            return kind
        if found and found[-1].end() > end:
            best, end = kind, found[-1].end()
    return best


def _rich_context(lines: list[str], i: int, x: int) -> tuple[str, list[str], str]:
    """For a number at column x of body row i of a table drawn by rich: (its column header, the row's
    text cells, the table's title)."""
    col = lines[i][:x].count("│")
    top = max(j for j in range(i) if lines[j].startswith("┡"))
    head = top
    while head > 0 and lines[head - 1].startswith("┃"):
        head -= 1
    header = " ".join(c for c in (line.split("┃")[col].strip() for line in lines[head:top]) if c)
    title = []
    j = head - 2  # the line above the ┏ border; a title takes one or two lines
    while j >= max(0, head - 3) and lines[j].strip() and lines[j].lstrip()[0] not in "│└┃┏┡├":
        title.insert(0, lines[j].strip())
        j -= 1
    cells = [c.strip() for c in lines[i].split("│")]
    return header, [c for c in cells if c and not FLOAT.fullmatch(c)], " ".join(title)


def _ruled_context(lines: list[str], i: int, x: int, end: int) -> tuple[str, list[str], str] | None:
    """For a number spanning columns x..end in a table runner.analysis.tables draws (header lines, a rule
    of ─, then rows; numeric columns right-aligned, their header words ending where the numbers end):
    "(header)" on a header line, else (the header words that end where it ends, top to bottom, the row's
    text cells, ""); None outside such a table."""
    below = next((j for j in range(i + 1, min(i + 4, len(lines))) if RULE_LINE.match(lines[j])
                  or not lines[j].strip()), None)
    if below is not None and RULE_LINE.match(lines[below]) and not lines[i].startswith("Run "):
        return "(header)", [], ""  # up to three header lines; a title above them is running text
    rule = next((j for j in range(i - 1, -1, -1) if RULE_LINE.match(lines[j])), None)
    if rule is None:
        return None
    head = rule
    while head > 0 and rule - head < 4 and lines[head - 1].strip() and not lines[head - 1].startswith("Run "):
        head -= 1
    if lines[i].lstrip().startswith("["):  # an interval on the line under its estimate: that column's
        end = len(lines[i].rstrip())
    words = [w.group() for line in lines[head:rule] for w in re.finditer(r"\S+", line) if w.end() == end]
    row = [w for w in lines[i].split() if not TOKEN.fullmatch(w.strip("[],"))]
    return " ".join(words), row, ""


def _column_context(lines: list[str], i: int, x: int, name: str, end: int | None = None
                    ) -> tuple[str, list[str], str] | None:
    """Header, row text cells and title of the table cell at (i, x), or None in running text."""
    line = lines[i]
    if end is not None and not line.startswith(("┃", "│", "|")):
        ruled = _ruled_context(lines, i, x, end)
        if ruled is not None:
            return ruled
    if line.startswith("┃"):
        return "(header)", [], ""
    if line.startswith("│"):
        return _rich_context(lines, i, x)
    if line.startswith("|"):  # a markdown table: its header is its first row
        first = i
        while first > 0 and lines[first - 1].startswith("|"):
            first -= 1
        if first == i:
            return "(header)", [], ""
        col = line[:x].count("|")
        cells = [c.strip() for c in line.split("|")]
        return lines[first].split("|")[col].strip(), [c for c in cells if c and not FLOAT.fullmatch(c)], ""
    if i > 0 and re.fullmatch(r"[\w]+(,[\w]+)+", lines[0]):  # a CSV with a header row
        return lines[0].split(",")[line[:x].count(",")], [], ""
    if i > 0 and name.startswith("sql-"):  # runner sql / plain(): left-aligned columns under one header line
        starts = [(m.start(), m.group()) for m in re.finditer(r"\S+", lines[0])]
        return [h for s, h in starts if s <= x][-1], [], ""
    return None


def numbers(block: str, name: str) -> list[Number]:
    """Every compared number of a block, in order, with the kind its context gives it: each decimal,
    and each integer that is a selected epoch ("selected_epoch"); other integers are text."""
    lines = block.split("\n")
    found = []
    for i, line in enumerate(lines):
        for m in TOKEN.finditer(line):
            where = _column_context(lines, i, m.start(), name, m.end())
            prefix = line[:m.start()]
            if "." not in m.group():  # an integer: compared exactly, as text, unless a selected epoch
                if (prefix.endswith("epoch-") or (where is not None and SELECTED_HEADER.match(where[0]))
                        or (where is None and SELECTED_TEXT.search(prefix))):
                    found.append(Number(m.group(), "selected_epoch", prefix[-40:].strip(), i, m.start(), m.end()))
                continue
            unit = next((k for k, r in SUFFIX_RULES if r.match(line[m.end():])), None)
            if unit is not None:  # a size in KB/MB/GB, in a table or in the text under it
                found.append(Number(m.group(), unit, prefix[-40:], i, m.start(), m.end()))
                continue
            if where is None:  # running text: the nearest kind word before it
                kind = _by_rules(prefix, latest=True)
                found.append(Number(m.group(), kind, prefix[-40:], i, m.start(), m.end()))
                continue
            header, row, title = where
            if header == "(header)" or header.endswith("(true"):
                kind = "exact"
            elif "bias" in row:
                kind = "bias"  # calibrate's bias row: added to each class's log-probability
            elif m.group().endswith("%"):
                kind = "share"  # a class share
            elif header == "value":  # a sweep's objective or a strategy's metric: named by the row or title
                kind = _by_rules(" ".join(row), latest=False) or _by_rules(title, latest=False)
            elif not header and row:  # a line of its own in a ruled table (calibrate's `T 0.733`)
                kind = _by_rules(" ".join(row), latest=False) or _by_rules(prefix, latest=True)
            else:
                kind = _by_rules(header, latest=False)
            found.append(Number(m.group(), kind, header, i, m.start(), m.end()))
    return found


def ranked_frame(block: str) -> list[str]:
    """What a RANKED block must keep: its lines with every number, trial status and sweep run masked
    (a blank table cell counts as a masked number: a pruned trial has no value) and runs of spaces
    made one (the table borders keep the column widths), the rows of each table in sorted order,
    running text joined (its wrapping follows the numbers' widths). In a table runner.analysis.tables
    draws (a rule of ─ under its header, as wide as the values make the table), a row is a line under
    the rule whose cells are two or more spaces apart, kept as its cells that are not numbers."""
    frame, rows, text = [], [], []
    ruled = False
    for line in block.split("\n") + [""]:
        masked = RUN_NAME.sub("<run>", STATUS.sub("<status>", ANY_NUMBER.sub("#", line)))
        masked = re.sub(r" +", " ", re.sub(r"│ +(?=│)", "│#", masked))  # borders keep the widths
        if masked.startswith("│"):
            rows.append(masked)
            continue
        if ruled and re.search(r"\S {2,}\S", line):
            cells = [RUN_NAME.sub("<run>", STATUS.sub("<status>", ANY_NUMBER.sub("#", c)))
                     for c in re.split(r" {2,}", line.strip())]
            rows.append(" ".join(c for c in cells if re.sub(r"[#\[\],\s]", "", c)))
            continue
        frame += sorted(rows)
        rows = []
        ruled = bool(RULE_LINE.match(line))
        if line.strip() and not RULE_LINE.match(line) and line.lstrip()[0] not in "┏┃┡└":
            text.append(masked.strip())
            continue
        if text:
            frame.append(" ".join(text))
            text = []
        frame.append("─" if RULE_LINE.match(line) else masked)  # a rule's length follows the values' widths
    return frame


def differences(expected: str, actual: str, name: str) -> list[str]:
    """Why a generated block does not match the page's: [] when its text and integers are the same and
    every decimal is within its kind's tolerance (for a RANKED block: its frame is the same, and its
    sweep runs but for the tolerated number redrawn)."""
    if name in RANKED:
        if ranked_frame(expected) != ranked_frame(actual):
            return ["text, tables, columns or strategies differ (numbers, statuses, order aside)"]
        redrawn = len(set(RUN_NAME.findall(expected)) - set(RUN_NAME.findall(actual)))
        if redrawn > tolerance("redrawn", name):
            return [f"{redrawn} trials' runs differ (tolerance {tolerance('redrawn', name)})"]
        return []
    if skeleton(expected, name) != skeleton(actual, name):
        return ["text, integers or layout differ"]
    problems = []
    for want, got in zip(numbers(expected, name), numbers(actual, name)):
        if want.kind in (None, "exact"):
            if want.text != got.text:
                problems.append(f"{want.text} -> {got.text} ({want.context!r}: compared exactly)")
            continue
        limit = allowed(want, name)
        if abs(want.value - got.value) > limit + 1e-9:
            problems.append(f"{want.text} -> {got.text} ({want.kind} in {want.context!r}: tolerance {limit:.4g})")
    return problems


def stale_blocks(text: str, generated: dict[str, str]) -> list[str]:
    """Names of the output blocks of a page (its markdown text) that `generated` ({name: text}) does
    not match, in page order; a block `generated` lacks is stale too."""
    return [name for name, block in markers(text)
            if name not in generated or differences(block, generated[name], name)]


def outputs(pages: list[str], threads: int = 1) -> dict[str, str]:
    """Run the quickstart and everything the pages show, in page order; {block name: text}.
    `pages` are the markdown texts, in the order given on the command line."""
    import torch

    from runner.store import Store

    torch.set_num_threads(threads)
    found = {}
    produce = steps()
    with quickstart_folder():
        for page in pages:
            for name in re.findall(r"<!-- output: ([\w-]+) -->", page):
                if name in found:
                    continue
                if name.startswith("sql-"):
                    cols, rows = Store("results.duckdb").open_read().query(sql_before(page, name))
                    found[name] = plain(cols, rows)
                elif name in produce:
                    found[name] = produce[name]()
    return {k: "\n".join(line.rstrip() for line in v.splitlines()) + "\n" for k, v in found.items()}


def rewrite(text: str, generated: dict[str, str]) -> str:
    """The page with every output block replaced by its generated text."""
    def replace(m: re.Match) -> str:
        fence = m.group(0).split("\n", 2)[1]
        return f"<!-- output: {m.group(1)} -->\n{fence}\n{generated[m.group(1)]}```"

    return MARKER.sub(replace, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=default_pages(),
                        help="markdown files whose output markers to fill or check (default README.md and "
                             "docs/**/*.md, in mkdocs.yml's nav order)")
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting")
    parser.add_argument("--dump", type=Path, help="also write the generated blocks to this JSON file; "
                        "without --check no page is touched")
    parser.add_argument("--from", dest="source", type=Path, help="take the generated blocks from a --dump "
                        "file instead of training")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported
    os.environ["COLUMNS"] = str(WIDTH)  # before runner.cli makes its consoles
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    pages = {path: path.read_text(encoding="utf-8") for path in args.files}
    names = [name for text in pages.values() for name, _ in markers(text)]
    if args.source:
        generated = json.loads(args.source.read_text(encoding="utf-8"))["blocks"]
    else:
        generated = outputs(list(pages.values()), args.threads)
    missing = sorted({n for n in names if n not in generated})
    if missing:
        raise SystemExit(f"output markers this script does not produce: {missing}")
    if args.dump:
        write_dump(args.dump, generated, args.threads)
        if not args.check:
            return 0
    if args.check:
        stale = []
        for path, text in pages.items():
            for name, block in markers(text):
                problems = differences(block, generated[name], name)
                if problems:
                    stale.append(f"{shown(path)}:{name}")
                    print(f"{shown(path)} ({name}): " + "; ".join(problems))
                    sys.stdout.writelines(difflib.unified_diff(
                        block.splitlines(True), generated[name].splitlines(True), f"{shown(path)} ({name})",
                        "generated"))
        if stale:
            print(f"\noutput blocks out of date: {', '.join(stale)}; run python scripts/readme_outputs.py "
                  + " ".join(shown(p) for p in args.files))
            return 1
        print(f"{listed(pages)}: {len(names)} output blocks match a fresh quickstart run")
        return 0
    for path, text in pages.items():
        path.write_text(rewrite(text, generated), encoding="utf-8")
    print(f"{listed(pages)}: rewrote {len(names)} output blocks")
    return 0


def shown(path: Path) -> str:
    """A page as messages name it: its path in the repository (docs pages share names), else its name."""
    path = path.resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name


def listed(pages) -> str:
    """The pages a message is about: named when a few, counted when many."""
    return ", ".join(shown(p) for p in pages) if len(pages) <= 3 else f"{len(pages)} pages (README.md, docs/)"


def write_dump(path: Path, generated: dict[str, str], threads: int) -> None:
    """The generated blocks as JSON, with what they were made on (scripts/readme_drift.py reads it)."""
    import platform

    import torch

    config = {"threads": threads, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "torch": torch.__version__, "machine": platform.machine(),
              "env": {k: v for k, v in os.environ.items() if k.startswith(("ATEN_", "MKL_", "ONEDNN_"))}}
    path.write_text(json.dumps({"config": config, "blocks": generated}, indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    print(f"{path}: {len(generated)} generated blocks")


if __name__ == "__main__":
    sys.exit(main())
