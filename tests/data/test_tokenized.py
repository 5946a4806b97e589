"""The tokenization cache (runner.data.tokenized) and what `precision = "auto"` sets around it: the
same stored numbers with and without the cache, a new key for anything that changes the tokens,
the disk folder written once and read back, `runner gc`, the DataLoader defaults on CPU and CUDA,
and SDPA attention in the scratch backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from runner.cli import app
from runner.data import tokenized
from runner.store import Store, caches

REPO = Path(__file__).resolve().parents[2]

# Two scratch BERTs with the same tokenizer options: they train the same vocabulary, so the second
# member (and the training after each member's dry run) finds its tokens in the cache.
SPEC = """
name = "tok"
seed = 5

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = {max_length}

[data.options]
size = {size}

[train]
epochs = 1
batch_size = 32
learning_rate = 2e-3

[[members]]
name = "a"
backbone = "scratch"
options = {{ hidden_size = 32, layers = 1, heads = 2, vocab_size = 600 }}

[[members]]
name = "b"
backbone = "scratch"
options = {{ hidden_size = 32, layers = 1, heads = 2, vocab_size = 600 }}
"""


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def probabilities(store: Path) -> list[tuple]:
    return Store(store).query("SELECT member, checkpoint, split, idx, probs FROM predictions "
                              "ORDER BY member, checkpoint, split, idx")[1]


@pytest.fixture
def count_tokenizations(monkeypatch):
    """How many times training tokenized a whole dataset (the dry run tokenizes a few batches only)."""
    calls = []
    real = tokenized._tokenize_all

    def counted(tokenizer, data, max_length):
        calls.append(data.dataset_id)
        return real(tokenizer, data, max_length)

    monkeypatch.setattr(tokenized, "_tokenize_all", counted)
    tokenized.MEMORY.clear()
    yield calls
    tokenized.MEMORY.clear()


def test_the_cache_changes_no_stored_number_and_tokenizes_once(tmp_path, monkeypatch, count_tokenizations):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(size=200, max_length=40))
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    off, cold, warm = tmp_path / "off" / "r.duckdb", tmp_path / "on" / "r.duckdb", tmp_path / "on" / "again.duckdb"

    monkeypatch.setenv(tokenized.ENV_SWITCH, "0")
    assert cli("apply", spec, "--store", off)[0] == 0
    assert len(count_tokenizations) == 2  # once per member
    assert not (tmp_path / "off" / "tokenized").exists()

    monkeypatch.delenv(tokenized.ENV_SWITCH)
    count_tokenizations.clear()
    assert cli("apply", spec, "--store", cold)[0] == 0
    assert len(count_tokenizations) == 1  # member a; member b finds it in memory
    folders = [p for p in (tmp_path / "on" / "tokenized").iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / tokenized.INFO).is_file()
    assert not list((tmp_path / "on" / "tokenized").glob("*.partial"))
    assert caches.stores_using(folders[0]) == [str(cold)]

    tokenized.MEMORY.clear()  # a new process: only the disk remembers
    count_tokenizations.clear()
    assert cli("apply", spec, "--store", warm)[0] == 0
    assert count_tokenizations == []
    assert caches.stores_using(folders[0]) == [str(cold), str(warm)]

    reference = probabilities(off)
    assert len(reference) > 0
    assert probabilities(cold) == reference and probabilities(warm) == reference  # bit for bit

    # gc keeps the folder while a store that used it has a run on its data, then removes it
    empty = tmp_path / "on" / "empty.duckdb"
    Store(empty).open()
    code, _, err = cli("gc", "--store", empty)
    assert code == 0 and folders[0].is_dir(), err
    cold.unlink()
    warm.unlink()
    code, _, err = cli("gc", "--store", empty, "--dry-run")
    assert code == 0 and "would free" in err and folders[0].is_dir(), err
    code, _, err = cli("gc", "--store", empty)
    assert code == 0 and not folders[0].exists() and "1 of 1 tokenized splits unreferenced" in err, err


def test_a_changed_tokenizer_max_length_or_dataset_is_a_new_key():
    from runner.data.prepare import PreparedData, Split, dataset_hash
    from runner.data.tokenization import train_tokenizer

    texts = [f"review {i}: the film was {w}" for i, w in enumerate(["dull", "superb", "fine", "bad"] * 10)]
    labels = np.arange(len(texts)) % 4
    splits = {"train": Split(texts, labels)}
    data = PreparedData(list("abcd"), splits, dataset_hash(list("abcd"), splits))
    tok = train_tokenizer(texts, "wordpiece", vocab_size=200)
    fp = tokenized.tokenizer_fingerprint(tok)
    base = tokenized.cache_key(data.dataset_id, fp, 32)
    assert tokenized.cache_key(data.dataset_id, tokenized.tokenizer_fingerprint(
        train_tokenizer(texts, "wordpiece", vocab_size=200)), 32) == base  # same content, same key
    assert tokenized.cache_key(data.dataset_id, fp, 33) != base
    other_vocab = train_tokenizer(texts[:-4], "wordpiece", vocab_size=200)
    assert tokenized.cache_key(data.dataset_id, tokenized.tokenizer_fingerprint(other_vocab), 32) != base
    cased = train_tokenizer(texts, "wordpiece", vocab_size=200, lowercase=False)
    assert tokenized.tokenizer_fingerprint(cased) != fp
    special = train_tokenizer(texts, "wordpiece", vocab_size=200)
    special.add_special_tokens({"extra_special_tokens": ["[ACTOR]"]})
    assert tokenized.tokenizer_fingerprint(special) != fp
    left = train_tokenizer(texts, "wordpiece", vocab_size=200)
    left.padding_side = "left"
    assert tokenized.tokenizer_fingerprint(left) != fp
    changed = {"train": Split(texts[:-1] + ["review 39: the film was awful"], labels)}
    assert dataset_hash(list("abcd"), changed) != data.dataset_id  # so the key changes with the data
    assert tokenized.cache_key(dataset_hash(list("abcd"), changed), fp, 32) != base


def test_disk_folder_round_trip_and_a_damaged_folder_is_retokenized(tmp_path):
    from runner.data.prepare import PreparedData, Split, dataset_hash
    from runner.data.tokenization import train_tokenizer

    texts = [f"text {i} " + "word " * (i % 7) for i in range(50)]
    splits = {"train": Split(texts[:30], np.zeros(30, dtype=np.int64)),
              "test": Split(texts[30:], np.zeros(20, dtype=np.int64))}
    data = PreparedData(["x"], splits, dataset_hash(["x"], splits))
    tok = train_tokenizer(texts, "bpe", vocab_size=300)
    root = tmp_path / "tokenized"
    tokenized.MEMORY.clear()
    first, look = tokenized.encoded_splits(tok, data, 8, root, tmp_path / "r.duckdb")
    assert look.source == "tokenized" and (root / look.key / tokenized.INFO).is_file()
    tokenized.MEMORY.clear()
    again, look2 = tokenized.encoded_splits(tok, data, 8, root)
    assert look2.source == "disk" and look2.key == look.key
    direct = tok(texts[30:], truncation=True, max_length=8)
    for name in ("train", "test"):
        assert set(again[name].arrays) == set(first[name].arrays)
        for k in first[name].arrays:
            assert np.array_equal(again[name].arrays[k], first[name].arrays[k])
    rows = [again["test"].arrays["input_ids"][a:b].tolist()
            for a, b in zip(again["test"].offsets[:-1], again["test"].offsets[1:])]
    assert rows == direct["input_ids"]
    # a DDP follower reads the folder and writes none; a store folder missing here (another node) is not made
    follower = tmp_path / "follower" / "tokenized"
    follower.parent.mkdir()
    tokenized.MEMORY.clear()
    assert tokenized.encoded_splits(tok, data, 8, follower, write=False)[1].source == "tokenized"
    assert not follower.exists()
    tokenized.MEMORY.clear()
    assert tokenized.encoded_splits(tok, data, 8, root, write=False)[1].source == "disk"
    tokenized.MEMORY.clear()
    elsewhere = tmp_path / "not-on-this-node" / "tokenized"
    assert tokenized.encoded_splits(tok, data, 8, elsewhere)[1].folder is None and not elsewhere.parent.exists()
    (root / look.key / "test.input_ids.npy").write_bytes(b"not numpy")
    tokenized.MEMORY.clear()
    _, look3 = tokenized.encoded_splits(tok, data, 8, root)
    assert look3.source == "tokenized"
    tokenized.MEMORY.clear()


def test_loader_defaults_on_cpu_and_cuda_and_trainer_args_override_them(tmp_path, monkeypatch):
    from runner.run.plan import plan
    from runner.train.arguments import training_arguments

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(size=80, max_length=32))
    p = plan(spec, REPO / "plugins")
    m = p.resolved.members[0]
    args = training_arguments(m, p.resolved, tmp_path / "o")
    assert args.dataloader_num_workers == 0 and not args.dataloader_pin_memory
    assert not args.dataloader_persistent_workers and not (args.bf16 or args.fp16)

    # what a CUDA machine gets (TrainingArguments is built with use_cpu so it does not look for a GPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr("runner.train.arguments.cpus_per_member", lambda resolved: 16)
    from runner.train import arguments as train

    kwargs = {**train.loader_args(p.resolved), **train.precision_args("auto")}
    assert kwargs == {"dataloader_pin_memory": True, "dataloader_num_workers": 4,
                      "dataloader_persistent_workers": True, "bf16": True}
    monkeypatch.setattr("runner.train.arguments.cpus_per_member", lambda resolved: 2)
    assert train.loader_args(p.resolved)["dataloader_num_workers"] == 2
    monkeypatch.undo()
    three = tmp_path / "three.toml"  # a member's share of the cores, as [compute] gives it
    three.write_text(SPEC.format(size=80, max_length=32) + "\n[compute]\ncpus_per_member = 3\n")
    p3 = plan(three, REPO / "plugins")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.loader_args(p3.resolved)["dataloader_num_workers"] == 3
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert train.precision_args("auto") == {"fp16": True}
    assert train.precision_args("fp32") == {}

    # [train.trainer_args] wins; zero workers drops the persistent flag DataLoader would refuse
    override = plan(spec, REPO / "plugins", overrides=(("train.trainer_args", {"dataloader_num_workers": 0,
                                                                                "use_cpu": True}),))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("runner.train.arguments.loader_args", lambda resolved: {
        "dataloader_pin_memory": False, "dataloader_num_workers": 3, "dataloader_persistent_workers": True})
    args = training_arguments(override.resolved.members[0], override.resolved, tmp_path / "o")
    assert args.dataloader_num_workers == 0 and not args.dataloader_persistent_workers


def test_scratch_attention_is_sdpa_and_matches_eager():
    from runner.builtins.backbones import ScratchOptions, build_scratch
    from runner.plugins.contexts import BackboneContext

    texts = [f"review {i}: a {w} film" for i, w in enumerate(["dull", "superb", "fine", "bad"] * 8)]
    ctx = BackboneContext(model=None, num_labels=4, label_names=list("abcd"), train_texts=texts,
                          max_length=24, seed=1)
    for arch in ("bert", "roberta"):
        model, tok = build_scratch(ctx, ScratchOptions(architecture=arch, hidden_size=32, layers=2, heads=4,
                                                       vocab_size=200))
        assert model.config._attn_implementation == "sdpa"
        eager = type(model)(model.config.__class__(**{**model.config.to_dict(), "attn_implementation": "eager"}))
        eager.load_state_dict(model.state_dict())
        assert eager.config._attn_implementation == "eager"
        batch = tok(texts[:6], padding=True, truncation=True, max_length=24, return_tensors="pt")
        model.eval(), eager.eval()
        with torch.no_grad():
            a, b = model(**batch).logits, eager(**batch).logits
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_a_scratch_tokenizer_is_trained_once_per_process_and_each_caller_gets_its_own(monkeypatch):
    from runner.data import tokenization

    texts = [f"review {i}: a {w} film" for i, w in enumerate(["dull", "superb", "fine", "bad"] * 8)]
    trained = []
    real = tokenization._wordpiece
    monkeypatch.setattr(tokenization, "_wordpiece", lambda *a: trained.append(1) or real(*a))
    tokenization._TRAINED.clear()
    first = tokenization.train_tokenizer(texts, "wordpiece", vocab_size=150)
    second = tokenization.train_tokenizer(texts, "wordpiece", vocab_size=150)
    assert len(trained) == 1 and first is not second
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    first.add_special_tokens({"extra_special_tokens": ["[ACTOR]"]})
    assert len(second) == len(first) - 1  # adding to one changes neither the other nor the cache
    assert len(tokenization.train_tokenizer(texts, "wordpiece", vocab_size=150)) == len(second)
    tokenization.train_tokenizer(texts, "wordpiece", vocab_size=160)
    assert len(trained) == 2
