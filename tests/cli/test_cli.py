"""The command line as a person reads it: `--version`, help text at 80 and 100 columns, `validate`'s
summary and `--show-spec`, did-you-mean for a misspelt key, and the progress lines of `apply`."""

from __future__ import annotations

import io
import re
import tomllib

import pytest
from rich.console import Console
from typer.testing import CliRunner

from runner.cli import app
from runner.cli.app import reflow
from runner.core.progress import TrainingProgress

SPEC = """
name = "tiny"
seed = 3

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 32

[data.options]
size = 200

[train]
epochs = 2
batch_size = 16

[[members]]
name = "a"
backbone = "scratch"
options = { architecture = "bert", hidden_size = 32, layers = 1, heads = 2, vocab_size = 400 }
"""


def run(*args, columns: int = 100):
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(app, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_version_names_runner_and_the_engines():
    result = run("--version")
    assert result.exit_code == 0
    found = dict(line.split() for line in result.stdout.splitlines())
    assert found["runner"] and {"python", "torch", "transformers", "duckdb"} <= set(found)


def _commands():
    import typer.main

    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("columns", [80, 100])
def test_help_fits_and_keeps_each_paragraph_whole(columns):
    import typer.main

    group = typer.main.get_command(app)
    for name in [None, *_commands()]:
        result = run(*([name] if name else []), "--help", columns=columns)
        assert result.exit_code == 0, result.stdout
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= columns, name
        assert "<bool>" not in result.stdout, name  # a flag is its name, no type
        # the description is the docstring's words in order, wrapped only where the terminal ends
        shown = " ".join(re.sub(r"[│╭╮╰╯─]", " ", line).strip() for line in lines)
        doc = group.commands[name].help if name else group.help
        for paragraph in reflow(doc).split("\n\n"):
            for line in paragraph.splitlines():
                assert " ".join(line.split()) in " ".join(shown.split()), (name, line)


def test_reflow_joins_a_paragraphs_lines_and_keeps_list_items():
    doc = """First line
    goes on.

    Second paragraph,
    broken in the source.
    - an item
    - another
    """
    assert reflow(doc) == "First line goes on.\n\nSecond paragraph, broken in the source.\n- an item\n- another"


def test_validate_prints_a_short_summary_and_show_spec_a_spec_that_validates_the_same(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.toml").write_text(SPEC)
    result = run("validate", "spec.toml", "--no-check-models")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok spec.toml: spec hash ") and len(lines) <= 10 and "{" not in result.stdout
    assert max(len(line) for line in lines) <= 100
    spec_hash = lines[0].split()[-1]

    shown = run("validate", "spec.toml", "--no-check-models", "--show-spec")
    assert shown.exit_code == 0, shown.stderr
    resolved = tomllib.loads(shown.stdout)
    assert resolved["members"][0]["options"]["hidden_size"] == 32 and resolved["train"]["learning_rate"] == 5e-5
    (tmp_path / "resolved.toml").write_text(shown.stdout)
    again = run("validate", "resolved.toml", "--no-check-models")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines()[0].split()[-1] == spec_hash  # the same spec, every default written out

    quiet = run("validate", "spec.toml", "--no-check-models", "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == ""


@pytest.mark.parametrize("typo, hint", [
    ("[train]\nepoch = 3", "train.epoch: unknown key (did you mean 'epochs'?)"),
    ("[trian]\nepochs = 3", "trian: unknown key (did you mean 'train'?)"),
    ("[loss]\nname = \"focal\"\ngama = 2.0", "loss.gama: unknown key (did you mean 'gamma'?)"),
    ("[adapt]\nmlm_prob = 0.2", "adapt.mlm_prob: unknown key (did you mean 'mlm_probability'?)"),
    ("[data.options]\nsise = 300", "data.options.sise: unknown key (did you mean 'size'?)"),
    ("[sweep]\ntrails = 3\n[sweep.space]\n\"loss.label_smoothing\" = [0.0, 0.2]",
     "sweep.trails: unknown key (did you mean 'trials'?)"),
])
def test_every_unknown_key_says_what_it_may_be_a_typo_of(tmp_path, typo, hint):
    (tmp_path / "spec.toml").write_text(_with(SPEC, typo))
    result = run("validate", tmp_path / "spec.toml", "--no-check-models")
    assert result.exit_code == 2 and hint in " ".join(result.stderr.split()), result.stderr


def _with(spec: str, extra: str) -> str:
    """The spec with `extra`'s table merged in (a table may appear once in TOML)."""
    header, _, body = extra.partition("\n")
    if header in spec:
        return spec.replace(header + "\n", header + "\n" + body + "\n", 1)
    return spec + "\n" + extra + "\n"


class _Member:
    def __init__(self, name, epochs):
        self.name = name
        self.train = type("T", (), {"epochs": epochs})()


def _progress(show_test: bool):
    buf = io.StringIO()
    p = TrainingProgress(Console(file=buf, width=200, force_terminal=False), show_test=show_test)
    p.start([_Member("m", 3)])
    p.member_started("m", 3, 0, 32)
    for epoch, acc in ((1, 0.5), (2, 0.7)):
        p.step("m", epoch * 10, 30)
        p.epoch_done("m", epoch, {"train_loss": 1.0, "eval_accuracy": acc, "test_accuracy": acc + 0.01}, "accuracy")
        if epoch == 1:
            assert ("test_accuracy" in p.info["m"]) == show_test  # never while training, unless asked
    p.member_done("m", 2, "accuracy")
    done = p.info["m"]
    p.stop()
    return done, buf.getvalue()


def test_progress_hides_test_metrics_until_the_member_ends():
    done, _ = _progress(show_test=False)
    assert "selected epoch 2" in done and "eval_accuracy 0.7000" in done and "test_accuracy 0.7100" in done
    _progress(show_test=True)


def test_progress_shows_samples_per_second_and_time_left():
    import time

    p = TrainingProgress(Console(file=io.StringIO()))
    p.start([_Member("m", 2)])
    p.member_started("m", 2, 0, 32)
    assert p._rate("m", 1, 100) == ""  # one step: nothing measured yet
    time.sleep(0.05)
    rate = p._rate("m", 11, 100)
    assert re.fullmatch(r"[\d,]+ samples/s · \d+:\d\d:\d\d left", rate), rate
    p.stop()
