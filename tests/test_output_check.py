"""The check of the docs' output blocks (scripts/readme_outputs.py), without training: on the docs'
own blocks, a drift of the size measured across CPUs and thread counts passes, while a real change (an
accuracy moved by 0.02, an epoch, a strategy name, a column, a word) fails; markers are found across
several markdown files. tests/test_docs.py runs the same check against a fresh quickstart run."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import readme_drift  # noqa: E402
import readme_outputs as ro  # noqa: E402

# The pages whose blocks the check covers by default: README.md, whose short tour repeats blocks of the
# tutorial, and the docs pages, which hold every block once (TEXT: the docs pages' text).
PAGES = {path: path.read_text(encoding="utf-8") for path in ro.default_pages()}
TEXT = "\n".join(text for path, text in PAGES.items() if path != ro.README)
BLOCKS = dict(ro.markers(TEXT))
# The measurement the tolerances come from: scripts/readme_outputs.py --dump on 1 and 2 threads, with
# ATen's AVX2 and scalar kernels, and with MKL/oneDNN's compatible paths (its docstring has the commands).
DUMPS = {p.stem: json.loads(p.read_text(encoding="utf-8"))["blocks"]
         for p in sorted((REPO / "tests" / "drift").glob("*.json"))}


def moved(block: str, name: str, by) -> str:
    """The block with each compared number moved by `by(number, i)` (a fraction for percentages),
    written as the block writes it: same decimals, sign style and percent sign."""
    lines = block.split("\n")
    for i, number in reversed(list(enumerate(ro.numbers(block, name)))):
        delta = by(number, i)
        if not delta:
            continue
        text = number.text
        if "." not in text:  # an integer (a selected epoch)
            out = str(round(number.value + delta))
        else:
            pct = text.endswith("%")
            digits = len(text.rstrip("%").split(".")[1])
            value = (number.value + delta) * (100 if pct else 1)
            out = (f"{value:+.{digits}f}" if text[0] in "+-" else f"{value:.{digits}f}") + ("%" if pct else "")
        line = lines[number.line]
        lines[number.line] = line[:number.start] + out + line[number.end:]
    return "\n".join(lines)


def measured_step(number: ro.Number, name: str) -> float:
    """The largest difference measured for the number's kind in the block's run, in the number's unit."""
    seen = ro.MEASURED[ro.RUN.get(name, "quickstart")].get(number.kind, 0.0)
    if number.kind in ro.COUNTED:
        return seen / ro.EXAMPLES.get(name, ro.DEFAULT_EXAMPLES)
    return seen


def compared(kind=None):
    """The docs' blocks compared number by number (not RANKED), holding a number of `kind`."""
    return {name: block for name, block in BLOCKS.items() if name not in ro.RANKED
            and (kind is None or any(n.kind == kind for n in ro.numbers(block, name)))}


KINDS = sorted({n.kind for name, block in compared().items() for n in ro.numbers(block, name)} - {"exact", None})


def last_digit(number: ro.Number) -> float:
    """One unit of the number's last printed digit, in its unit (so that a move survives rounding)."""
    if "." not in number.text:
        return 1
    digits = len(number.text.rstrip("%").split(".")[1])
    return 10.0 ** -digits / (100 if number.text.endswith("%") else 1)


def test_the_pages_match_themselves_and_hold_each_block_once():
    """Every page's blocks are the docs' blocks of the same name; none is on two docs pages, and the
    README repeats only blocks the docs hold."""
    assert all(ro.stale_blocks(text, BLOCKS) == [] for text in PAGES.values())
    names = [name for name, _ in ro.markers(TEXT)]
    assert len(names) == len(set(names)) and len(names) >= 20
    assert {name for name, _ in ro.markers(PAGES[ro.README])} <= set(names)


def test_every_decimal_the_readme_shows_has_a_kind():
    """A number no rule classifies is compared exactly, which another CPU may fail: every one the
    docs compare is classified (a new block needs its kinds in RULES)."""
    unclassified = [(name, n.text, n.context) for name, block in compared().items()
                    for n in ro.numbers(block, name) if n.kind is None]
    assert unclassified == []
    assert {"share", "loss", "f1_balanced", "weight", "probability"} <= set(KINDS)


def test_every_kind_the_readme_compares_was_measured_in_its_run():
    missing = sorted({(ro.RUN.get(name, "quickstart"), n.kind) for name, block in compared().items()
                      for n in ro.numbers(block, name) if n.kind != "exact"
                      and n.kind not in ro.MEASURED[ro.RUN.get(name, "quickstart")]})
    assert missing == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_drift_of_the_measured_size_passes_and_past_the_tolerance_fails(kind):
    """Every number of `kind` in every block moved by the largest difference measured for its kind in
    its run (alternately up and down) passes; moved past the tolerance (1.5 times it and a last
    digit), every block holding such a number fails."""
    up_down = lambda i: 1 if i % 2 == 0 else -1  # noqa: E731
    drifted = {name: moved(block, name, lambda n, i: (n.kind == kind) * up_down(i) * measured_step(n, name))
               for name, block in BLOCKS.items()}
    assert ro.stale_blocks(TEXT, drifted) == []
    far = {name: moved(block, name, lambda n, i: (n.kind == kind) * (1.5 * ro.allowed(n, name) + last_digit(n)))
           for name, block in BLOCKS.items()}
    holding = [name for name in BLOCKS if name in compared(kind)]
    assert holding and ro.stale_blocks(TEXT, far) == holding


def test_the_measured_configurations_pass_against_each_other_and_measured_covers_them():
    """Real drift: the committed dumps (other thread counts and CPU kernel paths) pass the check against
    each other, and MEASURED is at least the largest difference among them (it also counts the
    README's own blocks as made)."""
    assert set(DUMPS) == {"t1", "t2", "avx2", "scalar", "mkl"}
    for a, b in itertools.combinations(DUMPS, 2):
        stale = [n for n in DUMPS[a] if ro.differences(DUMPS[a][n], DUMPS[b][n], n)]
        assert stale == [], (a, b, stale)
    largest, differing = readme_drift.measure(list(DUMPS.values()))
    assert differing == []
    for run, kinds in readme_drift.as_measured(largest).items():
        for kind, size in kinds.items():
            assert size <= ro.MEASURED[run][kind], (run, kind, size)


def test_bold_follows_the_values():
    """A markdown table marks each column's best value in bold: which cell that is may change."""
    block = BLOCKS["compare-markdown"]
    other = block.replace("| 0.7483 | **0.7694** |", "| 0.7483 | 0.7694 |").replace(
        "| **0.6203** | 0.0466 |", "| 0.6203 | **0.0466** |")
    assert other != block and ro.stale_blocks(TEXT, {**BLOCKS, "compare-markdown": other}) == []


@pytest.mark.parametrize("name,old,new", [
    ("apply", "test_accuracy 0.7694", "test_accuracy 0.7894"),                 # an accuracy by 0.02
    ("compare", "0.7053 0.6789", "0.7253 0.6789"),                             # an F1 by 0.02
    ("apply", "test_log_loss 0.6203", "test_log_loss 0.6403"),                # a log-loss by 0.02
    ("predict", "bert-h64 0.155, roberta-h64 0.239", "bert-h64 0.175, roberta-h64 0.239"),  # a weight
    ("predict", "    27.3%  ", "    29.3%  "),                                 # a class share by 2 points
    ("apply", "       5   epoch-5", "       4   epoch-5"),                       # an integer (epochs)
    ("sql-ensemble-by-hand", "451", "450"),                                      # a count
    ("compare", "\nbest_eval_loss\n", "\nbest_eval_log_loss\n"),                   # a strategy name
    ("apply", "(fit weights:", "(given weights:"),                               # a word
    ("compare-markdown", "| tvd |", "| tvd | extra |"),                          # a column
    ("apply-sweep", "\nswa                    ", "\nswa_ema                "),  # a strategy (sweep)
    ("apply-sweep", "trial  status", "Trial  status"),                          # a header (sweep)
    ("sql-trial-params", "loss.gamma  ", "loss.beta   "),                        # a parameter (sweep)
])
def test_a_real_change_fails(name, old, new):
    block = BLOCKS[name]
    assert block.count(old) >= 1, old
    changed = TEXT.replace(block, block.replace(old, new, 1), 1)
    assert ro.stale_blocks(changed, BLOCKS) == [name]


def test_a_sweep_passes_with_other_values_statuses_order_and_redrawn_trials_up_to_the_tolerance():
    """The sweep's blocks follow near-tie values (RANKED): values, statuses, the rows' order and the
    trials TPE drew from the values may change; its tables, columns, strategies and trial count, and
    the runs of all but the tolerated number of trials, may not."""
    block = BLOCKS["apply-sweep"]
    lines = block.split("\n")
    rows = [i for i, line in enumerate(lines) if line.lstrip()[:1].isdigit() and "quickstart-sweep-t" in line]
    reordered = lines[:]
    reordered[rows[0]], reordered[rows[-1]] = lines[rows[-1]], lines[rows[0]]
    other = "\n".join(reordered)
    assert "finished  0.7350" in other
    other = other.replace("finished  0.7350", "pruned          ").replace("0.393", "0.123")
    other = other.replace("(0.7528)", "(0.7461)")
    allowed = int(ro.tolerance("redrawn", "apply-sweep"))
    runs = sorted(set(ro.RUN_NAME.findall(block)))
    for run in runs[:allowed]:
        other = other.replace(run, run[:-8] + "0badc0de")
    assert ro.stale_blocks(TEXT, {**BLOCKS, "apply-sweep": other}) == []
    too_many = other.replace(runs[allowed], runs[allowed][:-8] + "0badc0de")
    assert ro.stale_blocks(TEXT, {**BLOCKS, "apply-sweep": too_many}) == ["apply-sweep"]
    fewer = "\n".join(line for i, line in enumerate(lines) if i != rows[-1])
    assert ro.stale_blocks(TEXT, {**BLOCKS, "apply-sweep": fewer}) == ["apply-sweep"]


def test_a_changed_layout_fails():
    """A table's rule carries its width: one more character is a different table."""
    block = BLOCKS["ensemble"]
    wider = block.replace("──\n", "───\n", 1)
    assert wider != block
    assert ro.stale_blocks(TEXT.replace(block, wider, 1), BLOCKS) == ["ensemble"]


def test_a_missing_block_is_stale():
    assert ro.stale_blocks(TEXT, {k: v for k, v in BLOCKS.items() if k != "load"}) == ["load"]


def test_markers_across_several_files(tmp_path):
    """The pages given are checked together: a block may sit on any of them (or on several), and the
    command names the page and block that is stale. No training: the blocks come from a dump."""
    first = tmp_path / "index.md"
    second = tmp_path / "guide.md"
    first.write_text("# Quickstart\n\n<!-- output: apply -->\n```\n" + BLOCKS["apply"] + "```\n", encoding="utf-8")
    second.write_text("## Load\n\n<!-- output: load -->\n```\n" + BLOCKS["load"] + "```\n\nand again\n\n"
                      "<!-- output: apply -->\n```\n" + BLOCKS["apply"] + "```\n", encoding="utf-8")
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps({"config": {}, "blocks": BLOCKS}), encoding="utf-8")
    script = [sys.executable, str(REPO / "scripts" / "readme_outputs.py")]
    ok = subprocess.run(script + ["--check", "--from", str(dump), str(first), str(second)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 output blocks match" in ok.stdout

    second.write_text(second.read_text(encoding="utf-8").replace("0.2395", "0.3395"), encoding="utf-8")
    stale = subprocess.run(script + ["--check", "--from", str(dump), str(first), str(second)],
                           capture_output=True, text=True)
    assert stale.returncode == 1
    assert re.search(r"out of date: (.*?);", stale.stdout).group(1) == "guide.md:load", stale.stdout

    rewritten = subprocess.run(script + ["--from", str(dump), str(second)], capture_output=True, text=True)
    assert rewritten.returncode == 0 and "0.2395" in second.read_text(encoding="utf-8")

    second.write_text("<!-- output: no-such-block -->\n```\nx\n```\n", encoding="utf-8")
    unknown = subprocess.run(script + ["--check", "--from", str(dump), str(second)], capture_output=True, text=True)
    assert unknown.returncode == 1 and "no-such-block" in unknown.stderr
