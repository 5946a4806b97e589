"""`[adapt]`: masked-LM adaptation before fine-tuning (runner.train.adapt, runner.train.adapt_train), end to end.

A module-scoped store holds a run of two tiny scratch members without [adapt] and the same spec with
it; the tests check the MLM losses stored per epoch, the cache and its reuse (no MLM step trains the
second time), keys, `runner compare A B`, a refit starting from the parent's adaptation, the hf
backbone adapting a tiny model saved in a temporary folder, plugin backbones without the capability,
texts = ["test"] being recorded, a kill mid-adaptation resumed, and `runner gc`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from runner.store import Store

SPEC = """
name = "{name}"
seed = 3

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 40

[data.options]
size = {size}

[train]
epochs = 2
batch_size = 16
learning_rate = 5e-3
lr_scheduler = "constant"

{adapt}

[[members]]
name = "a"
backbone = "scratch"
options = {{ architecture = "bert", hidden_size = 32, layers = 1, heads = 2, vocab_size = 1000 }}

[[members]]
name = "b"
backbone = "scratch"
options = {{ architecture = "roberta", hidden_size = 32, layers = 1, heads = 2, vocab_size = 1000 }}
"""
ADAPT = """[adapt]
epochs = 3
learning_rate = 5e-3
batch_size = 16
"""


def write(d: Path, name: str, adapt: str = ADAPT, size: int = 300) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    spec = d / f"{name}.toml"
    spec.write_text(SPEC.format(name=name, adapt=adapt, size=size))
    return spec


def cli(*args) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from runner.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def ok(*args) -> tuple[str, str]:
    code, out, err = cli(*args)
    assert code == 0, err
    return out, err


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapt")
    store = d / "results.duckdb"
    ok("apply", write(d, "plain", adapt=""), "--store", store)
    _, err = ok("apply", write(d, "adapted"), "--store", store)
    return {"dir": d, "store": store, "apply_err": err}


def test_mlm_loss_falls_across_adapt_epochs_and_is_stored(case):
    st = Store(case["store"])
    members = st.query_dicts("SELECT m.member, m.adapt_key FROM members m JOIN runs r USING (run_id) "
                             "WHERE r.name = 'adapted' ORDER BY member")
    keys = [m["adapt_key"] for m in members]
    assert len(keys) == 2 and all(k and k.startswith("scratch-") for k in keys) and keys[0] != keys[1]
    assert st.query("SELECT count(*) FROM members m JOIN runs r USING (run_id) WHERE r.name = 'plain' "
                    "AND m.adapt_key IS NOT NULL")[1][0][0] == 0
    for key in keys:
        held = [r[0] for r in st.query("SELECT mlm_loss FROM adapt_losses WHERE adapt_key = ? AND split = 'heldout' "
                                       "ORDER BY epoch", [key])[1]]
        train = [r[0] for r in st.query("SELECT mlm_loss FROM adapt_losses WHERE adapt_key = ? AND split = 'train' "
                                        "ORDER BY epoch", [key])[1]]
        assert len(held) == len(train) == 4  # epoch 0 (before adapting) and 3 adapt epochs
        assert all(later < earlier for earlier, later in zip(held, held[1:])), held
        assert held[-1] < 0.8 * held[0] and train[-1] < 0.8 * train[0], (held, train)
        row = st.query_dicts("SELECT * FROM adaptations WHERE adapt_key = ?", [key])[0]
        assert json.loads(row["sources"]) == {"train": 180, "valid": 60}  # 300 examples: 60% train, 20% valid
        assert row["n_texts"] + row["n_heldout"] == 240 and row["n_heldout"] == 24
        folder = Path(row["path"])
        assert folder == case["dir"] / "adapted" / key and (folder / "model.safetensors").is_file()
        assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
        assert f"adapt: training {key}" in case["apply_err"]
    assert not list((case["dir"] / "adapted").glob("*.partial"))


def test_fine_tuning_starts_from_the_adapted_encoder(case):
    """The adapted folder's encoder is what `build` starts from; the head is new."""
    from safetensors.torch import load_file

    from runner.builtins.backbones import ScratchOptions, build_scratch
    from runner.plugins.contexts import BackboneContext

    st = Store(case["store"])
    key = st.query("SELECT adapt_key FROM members m JOIN runs r USING (run_id) WHERE r.name = 'adapted' "
                   "AND member = 'a'")[1][0][0]
    folder = case["dir"] / "adapted" / key
    saved = load_file(str(folder / "model.safetensors"))
    ctx = BackboneContext(model=None, num_labels=4, label_names=list("wxyz"), max_length=40, seed=1, adapted=folder)
    model, tok = build_scratch(ctx, ScratchOptions(hidden_size=32, layers=1, heads=2, vocab_size=1000))
    state = model.state_dict()
    name = "bert.embeddings.word_embeddings.weight"
    assert (state[name] == saved[name]).all()
    assert model.config.num_labels == 4 and len(tok) == saved[name].shape[0]


def test_a_second_apply_reuses_the_cache_and_trains_no_mlm_step(case, monkeypatch):
    import runner.train.adapt_train as adapt_train

    def refuse(*a, **k):
        raise AssertionError("the adaptation trained again")

    monkeypatch.setattr(adapt_train, "train_adaptation", refuse)
    before = {p: p.stat().st_mtime_ns for p in (case["dir"] / "adapted").rglob("*.safetensors")}
    spec = case["dir"] / "adapted.toml"
    _, err = ok("apply", spec, "--store", case["store"], "--force")  # a new run of the same spec
    st = Store(case["store"])
    keys = [r[0] for r in st.query("SELECT adapt_key FROM members ORDER BY adapt_key")[1] if r[0]]
    assert len(keys) == 4 and len(set(keys)) == 2  # both runs' members share the two adaptations
    for key in set(keys):
        assert f"adapt: reused {key}" in err
    assert st.query("SELECT count(*) FROM adaptations")[1][0][0] == 2
    assert st.query("SELECT count(*) FROM (SELECT adapt_key, epoch, split FROM adapt_losses GROUP BY ALL "
                    "HAVING count(*) > 1)")[1][0][0] == 0
    assert {p: p.stat().st_mtime_ns for p in (case["dir"] / "adapted").rglob("*.safetensors")} == before


def test_keys_change_with_a_text_or_an_option_and_not_with_the_member_seed(tmp_path):
    from runner.run.plan import plan

    spec = write(tmp_path, "k")
    base = plan(spec).adaptations
    assert set(base) == {"a", "b"}

    def keys(*overrides):
        return {m: a.key for m, a in plan(spec, overrides=overrides).adaptations.items()}

    same = {m: a.key for m, a in base.items()}
    assert keys() == same
    assert keys(("members[0].seed", 99)) == same  # members of other seeds share an adaptation
    for override in (("adapt.mlm_probability", 0.2), ("adapt.epochs", 4), ("adapt.seed", 1),
                     ("adapt.texts", ["train"]), ("adapt.whole_word_mask", True), ("data.max_length", 48)):
        changed = keys(override)
        assert changed["a"] != same["a"] and changed["b"] != same["b"], override
    # one text more (an extra file) makes a new key; the same file again does not
    (tmp_path / "more.txt").write_text("one more review of a film\n")
    with_extra = keys(("adapt.extra", ["more.txt"]))
    assert with_extra["a"] != same["a"] and keys(("adapt.extra", ["more.txt"])) == with_extra
    (tmp_path / "more.txt").write_text("one more review of a film!\n")  # one character changed
    assert keys(("adapt.extra", ["more.txt"]))["a"] != with_extra["a"]
    # a member may opt out, or override the table for itself
    assert set(keys(("members[1].adapt", False))) == {"a"}
    own = keys(("members[1].adapt", {"epochs": 5}))
    assert own["a"] == same["a"] and own["b"] != same["b"]


def test_compare_a_b_answers_did_adaptation_help(case):
    out, _ = ok("compare", "plain", "adapted", "--store", case["store"], "--format", "json")
    rows = json.loads(out)
    assert [r["model"] for r in rows] == ["ensemble", "a", "b"]
    st = Store(case["store"])
    a, b = st.run("plain"), st.run("adapted")
    for r in rows:
        kind = "ensemble" if r["model"] == "ensemble" else "member"
        for side, run in (("a", a), ("b", b)):
            checkpoint = (run.selected_strategy if kind == "ensemble" else
                          next(m.selected_checkpoint for m in run.members if m.name == r["model"]))
            got = st.checkpoint_metrics(run.run_id)[(kind, r["model"], checkpoint)]
            assert r[f"{side}_test_accuracy"] == pytest.approx(got["test_accuracy"])
        assert r["delta_accuracy"] == pytest.approx(r["b_test_accuracy"] - r["a_test_accuracy"])
        assert r["low"] <= r["delta_accuracy"] <= r["high"]
    out, _ = ok("compare", "plain", "adapted", "--store", case["store"])
    differ = " ".join(out.split()).split("specs differ in: ")[1].split(", ")
    assert set(differ) == {"name", "adapt", "members[].adapt"}
    code, _, err = cli("compare", "plain", "plain", "--store", case["store"])
    assert code == 2 and "same run" in err


def test_a_refit_starts_from_its_parents_adaptation(case, tmp_path):
    import shutil

    store = tmp_path / "results.duckdb"
    shutil.copy(case["store"], store)
    shutil.copytree(case["dir"] / "adapted", tmp_path / "adapted")
    st = Store(store)
    parent = st.run("adapted")
    _, err = ok("refit", parent.run_id, "--store", store)
    refit_id = st.refit_runs(parent.run_id)[0]["run_id"]
    keys = dict(st.query("SELECT member, adapt_key FROM members WHERE run_id = ?", [parent.run_id])[1])
    assert dict(st.query("SELECT member, adapt_key FROM members WHERE run_id = ?", [refit_id])[1]) == keys
    assert all(f"adapt: reused {k}" in err for k in keys.values()) and "adapt: training" not in err


def test_a_refit_whose_adaptation_was_removed_makes_the_same_one_again(case, tmp_path):
    import shutil

    store = tmp_path / "results.duckdb"
    shutil.copy(case["store"], store)  # adapted/ is not copied: gone, as after a careless rm
    st = Store(store)
    parent = st.run("adapted")
    _, err = ok("refit", parent.run_id, "--store", store)
    keys = dict(st.query("SELECT member, adapt_key FROM members WHERE run_id = ?", [parent.run_id])[1])
    refit_id = st.refit_runs(parent.run_id)[0]["run_id"]
    assert dict(st.query("SELECT member, adapt_key FROM members WHERE run_id = ?", [refit_id])[1]) == keys
    assert all(f"adapt: training {k}" in err for k in keys.values())
    assert {p.name for p in (tmp_path / "adapted").iterdir() if p.is_dir()} == set(keys.values())


def test_texts_test_is_recorded_and_the_guide_warns(case, repo):
    st_path = case["dir"] / "transductive.duckdb"
    spec = write(case["dir"], "transductive", adapt=ADAPT.replace("epochs = 3", "epochs = 1") + 'texts = ["test"]\n')
    code, out, err = cli("validate", spec, "--store", st_path, "--show-spec")
    assert code == 0, err
    shown = tomllib.loads(out)
    assert shown["adapt"]["texts"] == ["test"] and shown["members"][0]["adapt"]["texts"] == ["test"]
    ok("apply", spec, "--store", st_path)
    st = Store(st_path)
    rows = st.query_dicts("SELECT settings, sources FROM adaptations")
    assert rows and all(json.loads(r["settings"])["texts"] == ["test"] and list(json.loads(r["sources"])) == ["test"]
                        for r in rows)
    guide = (repo / "docs" / "how-to" / "adapt.md").read_text()
    assert 'texts = ["test"]' in guide and "transductive" in guide


def test_hf_member_adapts_from_a_tiny_model_saved_in_a_temporary_folder(tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForSequenceClassification

    from runner.data.tokenization import train_tokenizer

    texts = [f"review {i}: the film was {w}" for i, w in enumerate(["good", "bad", "dull", "superb"] * 30)]
    tok = train_tokenizer(texts, "wordpiece", vocab_size=300, max_length=64)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    model_dir = tmp_path / "tiny-bert"
    BertForSequenceClassification(config).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    spec = tmp_path / "hf.toml"
    spec.write_text(
        'name = "hf-adapt"\n[data]\nsource = "synthetic"\nvalid = 0.2\nmax_length = 32\nspecial_tokens = ["[X]"]\n'
        "[data.options]\nsize = 120\n[train]\nepochs = 1\nbatch_size = 16\n"
        "[adapt]\nepochs = 2\nlearning_rate = 1e-3\nbatch_size = 16\nwhole_word_mask = true\n"
        f'[[members]]\nname = "tiny"\nbackbone = "hf"\nmodel = "{model_dir}"\n')
    store = tmp_path / "r.duckdb"
    _, err = ok("apply", spec, "--store", store)
    st = Store(store)
    key = st.query("SELECT adapt_key FROM members")[1][0][0]
    assert key.startswith("hf-") and f"adapt: training {key}" in err
    folder = tmp_path / "adapted" / key
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    adapted = load_file(str(folder / "model.safetensors"))
    original = load_file(str(model_dir / "model.safetensors"))
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not (adapted[name] == original[name]).all()  # masked-LM training moved the encoder
    assert adapted["bert.embeddings.word_embeddings.weight"].shape[0] == len(tok) + 1  # [X] added, resized
    held = [r[0] for r in st.query("SELECT mlm_loss FROM adapt_losses WHERE split = 'heldout' ORDER BY epoch")[1]]
    assert len(held) == 3 and held[-1] < held[0]


def test_a_plugin_backbone_without_adapt_is_a_validation_error_naming_the_member(tmp_path, repo):
    import shutil

    shutil.copytree(repo / "plugins", tmp_path / "plugins")
    body = (SPEC.format(name="gru", adapt=ADAPT, size=120)
            + '\n[[members]]\nname = "gru"\nbackbone = "gru"\noptions = { vocab_size = 500 }\n')
    spec = tmp_path / "gru.toml"
    spec.write_text(body)
    code, _, err = cli("validate", spec, "--store", tmp_path / "r.duckdb")
    assert code == 2
    assert "adapt" in err and "member gru" in err and "adapt = false" in err
    assert not (tmp_path / "r.duckdb").exists()
    spec.write_text(body + "adapt = false\n")
    code, _, err = cli("validate", spec, "--store", tmp_path / "r.duckdb")
    assert code == 0, err


def test_bad_adapt_inputs_exit_2_naming_the_key(tmp_path):
    cases = {
        'texts = ["train", "tset"]': "adapt.texts",
        'extra = ["missing.txt"]': "adapt.extra[0]",
        "mlm_probability = 1.5": "adapt.mlm_probability",
        'texts = ["test"]': "adapt.texts",  # the data has no test split here
    }
    for line, key in cases.items():
        spec = tmp_path / "bad.toml"
        spec.write_text(SPEC.format(name="bad", adapt="[adapt]\n" + line, size=120).replace("test = 0.2\n", ""))
        code, _, err = cli("validate", spec, "--store", tmp_path / "r.duckdb")
        assert code == 2 and key in err, (line, err)
        assert "Traceback" not in err and not (tmp_path / "r.duckdb").exists()


def test_an_extra_file_that_is_not_utf8_or_a_fifo_is_named_with_its_line(tmp_path):
    (tmp_path / "notes.txt").write_bytes(b"a good line\nanother\n\xff\xfe not text\n")
    os.mkfifo(tmp_path / "pipe.txt")
    for name, words in (("notes.txt", ["notes.txt", "line 3", "UTF-8"]), ("pipe.txt", ["pipe.txt", "named pipe"])):
        spec = tmp_path / "bad.toml"
        spec.write_text(SPEC.format(name="bad", adapt=f'[adapt]\nextra = ["{name}"]', size=120))
        code, _, err = cli("validate", spec, "--store", tmp_path / "r.duckdb")
        assert code == 2 and "adapt.extra[0]" in err and all(w in err for w in words), err


def test_a_killed_adaptation_resumes(tmp_path):
    """SIGKILL after the first adapt epoch's checkpoint; the same apply resumes the adaptation from it:
    every epoch's loss stored once, the cache folder complete, no partial folder left."""
    lines = [f"an unlabeled review number {i} about a film that was {w}"
             for i, w in enumerate(["long", "short", "fine", "odd", "grand"] * 600)]
    (tmp_path / "unlabeled.txt").write_text("\n".join(lines) + "\n")
    spec = write(tmp_path, "killed", adapt=ADAPT.replace("epochs = 3", "epochs = 4") + 'extra = ["unlabeled.txt"]\n',
                 size=120)
    spec.write_text(spec.read_text().split("[[members]]\nname = \"b\"")[0])  # one member
    store = tmp_path / "results.duckdb"
    cmd = [sys.executable, "-m", "runner.cli", "apply", str(spec), "--store", str(store)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "adapted").glob("*.partial/trainer/checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the adaptation never saved an epoch"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not [p for p in (tmp_path / "adapted").iterdir() if p.is_dir() and not p.name.endswith(".partial")]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "adapt: resuming" in again.stderr
    st = Store(store)
    epochs = [r[0] for r in st.query("SELECT epoch FROM adapt_losses WHERE split = 'heldout' ORDER BY epoch")[1]]
    assert epochs == [0, 1, 2, 3, 4]
    assert not list((tmp_path / "adapted").glob("*.partial"))
    assert st.run("killed").status == "finished"


def test_gc_removes_only_adaptations_no_store_references(tmp_path):
    one = "[adapt]\nepochs = 1\nbatch_size = 16\n"
    s1, s2 = tmp_path / "one.duckdb", tmp_path / "two.duckdb"
    ok("apply", write(tmp_path, "one", adapt=one, size=120), "--store", s1)
    ok("apply", write(tmp_path, "two", adapt=one.replace("epochs = 1", "epochs = 2"), size=120), "--store", s2)
    k1 = {r[0] for r in Store(s1).query("SELECT adapt_key FROM members")[1]}
    k2 = {r[0] for r in Store(s2).query("SELECT adapt_key FROM members")[1]}
    root = tmp_path / "adapted"
    assert {p.name for p in root.iterdir() if p.is_dir()} == k1 | k2 and not k1 & k2
    ok("gc", "--store", s1)  # the other store still references its folders: nothing goes
    assert {p.name for p in root.iterdir() if p.is_dir()} == k1 | k2
    s2.unlink()
    out, err = ok("gc", "--store", s1, "--dry-run")
    assert "would free" in err and {p.name for p in root.iterdir() if p.is_dir()} == k1 | k2
    out, err = ok("gc", "--store", s1)
    assert {p.name for p in root.iterdir() if p.is_dir()} == k1
    assert "2 of 4 adapted encoders unreferenced" in err


def test_ensemble_v3_adapts_every_member_as_the_notebook_did(repo, tmp_path):
    """The notebook's spec adapts its three Hub BERTs (validated here; trained where the Hub and a GPU are)."""
    from runner.plugins.registry import load_registry
    from runner.spec import load_and_resolve

    resolved = load_and_resolve(repo / "specs" / "ensemble_v3.toml", load_registry(None))
    assert [m.backbone for m in resolved.members] == ["hf"] * 3
    for m in resolved.members:
        assert m.adapt is not None and m.adapt.whole_word_mask and m.adapt.texts == ["train", "valid"]
        assert m.adapt.max_length == 128 and m.adapt.seed == resolved.spec.seed
    code, _, err = cli("validate", repo / "specs" / "ensemble_v3.toml", "--no-check-models",
                       "--store", tmp_path / "r.duckdb")
    assert code == 0, err


@pytest.mark.parametrize("side", ["right", "left"])
def test_fixed_masks_keep_each_examples_own_tokens_whatever_the_padding_side(side):
    """The evaluation slices are masked once in padded batches, then cut back to each example: for a
    tokenizer that pads on the left, that is the batch's last tokens, never its padding."""
    from transformers import DataCollatorForLanguageModeling

    from runner.data.tokenization import train_tokenizer
    from runner.train.adapt_train import _encode, _masked_once

    texts = [f"a review {i} that is {'long ' * (i % 5)}" for i in range(20)]
    tok = train_tokenizer(texts, "wordpiece", vocab_size=200, max_length=32)
    tok.padding_side = side
    rows = _encode(tok, texts, 32, False)
    masked = _masked_once(rows, DataCollatorForLanguageModeling(tok, seed=1))
    assert [len(m["input_ids"]) for m in masked] == [len(r["input_ids"]) for r in rows]
    assert not any(tok.pad_token_id in m["input_ids"] for m in masked)
    assert all(m["input_ids"][0] == tok.cls_token_id and m["labels"][0] == -100 for m in masked)
