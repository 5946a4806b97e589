"""The validation dry run: what training would trip over is found before anything is written.

Each case is a spec that passes the spec checks but would fail once training starts (a plugin model
with the wrong head, a loss that is not a scalar, Trainer arguments that only fail when used, a
seed an RNG refuses, paths too long for the OS); `validate` and `apply` must both stop it with exit
2 naming the key, and `apply` must leave no store, no run row and no runs/ folder.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

SPEC = """
name = "dry"
seed = 1

[data]
source = "synthetic"
valid = 0.25
max_length = 32

[data.options]
size = 80

[train]
epochs = 1
{train}

[[members]]
name = "m"
backbone = "{backbone}"
options = {options}
{member}
"""

TINY = "{ hidden_size = 16, layers = 1, heads = 2, vocab_size = 300 }"

PLUGIN = '''
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput
from runner import hookimpl
from runner.data.tokenization import train_tokenizer


class Bag(nn.Module):
    """An embedding bag; forward takes no `labels` (the docs never ask for one)."""

    def __init__(self, vocab, out):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab, 8)
        self.head = nn.Linear(8, out)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SequenceClassifierOutput(logits=self.head(self.embed(input_ids)))


def builder(extra_logits):
    def build(ctx, options):
        tok = ctx.tokenizer or train_tokenizer(ctx.train_texts, "wordpiece", vocab_size=300, max_length=ctx.max_length)
        torch.manual_seed(ctx.seed)
        return Bag(len(tok), ctx.num_labels + extra_logits), tok
    return build


def vector_loss(ctx, options):
    return lambda logits, labels: nn.functional.cross_entropy(logits, labels, reduction="none")


@hookimpl
def register_backbones(register):
    register("bag", builder(0))
    register("bag_wrong_head", builder(1))


@hookimpl
def register_losses(register):
    register("vector", vector_loss)
'''


def write(tmp_path: Path, backbone="scratch", options=TINY, train="", member="") -> Path:
    (tmp_path / "plugins").mkdir(exist_ok=True)
    (tmp_path / "plugins" / "bag.py").write_text(PLUGIN)
    spec = tmp_path / "spec.toml"
    if "batch_size" not in train:
        train = "batch_size = 16\n" + train
    spec.write_text(SPEC.format(backbone=backbone, options=options, train=train, member=member))
    return spec


def refused(run_cli, tmp_path, spec, *keys):
    """validate and apply both exit 2 naming `keys`; apply writes nothing."""
    store = tmp_path / "results.duckdb"
    for command in ("validate", "apply"):
        code, out, err = run_cli(command, spec, "--store", store)
        assert code == 2, (command, code, out, err)
        assert "Traceback" not in out + err
        assert str(spec) in err
        for key in keys:
            assert key in err, (key, err)
    assert not store.exists() and not (tmp_path / "runs").exists()
    return err


def test_a_plugin_model_without_labels_in_forward_trains(tmp_path, run_cli):
    spec = write(tmp_path, backbone="bag", options="{}")
    code, out, err = run_cli("apply", spec, "--store", tmp_path / "results.duckdb")
    assert code == 0, err
    assert "nan" not in err.lower()
    code, out, err = run_cli("sql", "SELECT eval_loss FROM epochs", "--store", tmp_path / "results.duckdb",
                             "--format", "json")
    assert code == 0 and json.loads(out)[0]["eval_loss"] > 0


def test_a_model_with_the_wrong_number_of_logits_is_refused(tmp_path, run_cli):
    spec = write(tmp_path, backbone="bag_wrong_head", options="{}")
    refused(run_cli, tmp_path, spec, "members[0].backbone", "logits of shape", "4 labels")


def test_a_loss_that_is_not_a_scalar_is_refused(tmp_path, run_cli):
    spec = write(tmp_path, member='loss = { name = "vector" }')
    refused(run_cli, tmp_path, spec, "members[0].loss", "scalar")


@pytest.mark.parametrize("train, key, words", [
    ('trainer_args = { optim = "adamw_8bit_not_a_thing" }', "trainer_args", "optim"),
    ('trainer_args = { dataloader_num_workers = -1 }', "trainer_args", "num_workers"),
    ('trainer_args = { gradient_checkpointing = true }', "trainer_args", "gradient checkpointing"),
])
def test_trainer_arguments_that_fail_only_when_used_are_refused(tmp_path, run_cli, train, key, words):
    spec = write(tmp_path, backbone="bag", options="{}", train=train)
    err = refused(run_cli, tmp_path, spec, key)
    assert words.lower() in err.lower()


@pytest.mark.parametrize("train, key", [
    ("warmup = inf", "train.warmup"),
    ("warmup = 2.5", "train.warmup"),
    ("batch_size = 9223372036854775807", "train.batch_size"),
    ("learning_rate = nan", "train.learning_rate"),
])
def test_numbers_that_pass_a_range_but_break_later_are_refused_by_the_spec(tmp_path, run_cli, train, key):
    refused(run_cli, tmp_path, write(tmp_path, train=train), key)


@pytest.mark.parametrize("seed, key", [("seed = -1", "seed"), ("seed = 4294967296", "seed")])
def test_seeds_an_rng_refuses_are_refused(tmp_path, run_cli, seed, key):
    spec = write(tmp_path)
    spec.write_text(spec.read_text().replace("seed = 1\n", seed + "\n", 1))
    refused(run_cli, tmp_path, spec, key)


def test_a_member_seed_overflowing_from_the_spec_seed_is_named(tmp_path, run_cli):
    spec = write(tmp_path)
    text = spec.read_text().replace("seed = 1\n", "seed = 4294967295\n", 1)
    text += '\n[[members]]\nname = "n"\nbackbone = "scratch"\noptions = ' + TINY + "\n"
    spec.write_text(text)
    refused(run_cli, tmp_path, spec, "members[1].seed")


def test_a_store_so_deep_that_checkpoint_paths_pass_the_os_limit_is_refused(tmp_path, run_cli):
    spec = write(tmp_path)
    deep = tmp_path
    while len(str(deep)) < 3800:
        deep = deep / ("d" * 200)
    deep = deep / ("e" * (4040 - len(str(deep)) - 1))  # the store's own path fits; its checkpoints' would not
    try:
        deep.mkdir(parents=True)
    except OSError:
        pytest.skip("this file system refuses a 4000-byte path outright")
    code, out, err = run_cli("apply", spec, "--store", deep / "results.duckdb")
    assert code == 2, err
    assert "--store" in err and "limit" in err
    assert not (deep / "results.duckdb").exists() and not (deep / "runs").exists()


def test_every_unreachable_model_is_named_at_once(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    spec = tmp_path / "spec.toml"
    spec.write_text(textwrap.dedent("""
        name = "hub"
        [data]
        source = "synthetic"
        [[members]]
        backbone = "hf"
        model = "org-a/model-one"
        [[members]]
        backbone = "hf"
        model = "org-b/model-two"
        [[members]]
        backbone = "hf"
        model = "./no/such/folder"
    """))
    code, out, err = run_cli("validate", spec)
    assert code == 2, err
    for key, model in (("members[0].model", "model-one"), ("members[1].model", "model-two"),
                       ("members[2].model", "no/such/folder")):
        assert key in err and model in err


def test_an_unreachable_hub_is_decided_once_quietly_and_names_every_model(tmp_path):
    """No network (the Hub at an address where nothing listens), offline mode off: `validate` decides
    once, prints no huggingface_hub retry lines, and names both Hub ids with their keys in one exit-2
    paragraph. The real CLI in a fresh process, as a user runs it (huggingface_hub reads HF_ENDPOINT at
    import). The bound is loose on purpose (it took 27 s per model before runner.core.hub; the README's
    figure is measured, not asserted)."""
    import os
    import subprocess
    import sys
    import time

    spec = tmp_path / "hub.toml"
    spec.write_text(textwrap.dedent("""
        name = "hub"
        [data]
        source = "synthetic"
        [data.options]
        size = 200
        [[members]]
        backbone = "hf"
        model = "org-a/model-one"
        [[members]]
        backbone = "hf"
        model = "org-b/model-two"
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf"))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "runner.cli", "validate", str(spec)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start
    shown = done.stdout + done.stderr
    assert done.returncode == 2, shown
    assert "Retry" not in shown and "Traceback" not in shown, shown
    paragraph = done.stderr.strip()
    assert "\n\n" not in paragraph, paragraph
    for key, model in (("members[0].model", "org-a/model-one"), ("members[1].model", "org-b/model-two")):
        assert f"{spec}: {key}: cannot load the model for '{model}'" in paragraph, paragraph
    assert paragraph.count("could not be reached (ConnectError") == 2, paragraph
    assert seconds < 60, f"validate took {seconds:.1f} s"
