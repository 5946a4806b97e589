"""Backbones: the scratch tokenizer, `hf` loading (by local path; errors offline), `scratch`, and the
example `gru` plugin, including the save/reload round trip through `load_checkpoint`.

No network: every model is tiny and built here, saved under tmp_path.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from runner.builtins.backbones import HFOptions, ScratchOptions, _diagnose, build_hf, build_scratch, check_reachable
from runner.data.tokenization import train_tokenizer
from runner.errors import ModelLoadError
from runner.plugins.contexts import BackboneContext
from runner.train.backbones import load_checkpoint, write_runner_json

REPO = Path(__file__).parents[2]
KOREAN = "연기는 좋았지만 스토리가 지루했다"
TEXTS = [
    KOREAN,
    "배우들의 연기가 정말 좋았다",
    "스토리가 너무 지루해서 잠이 들었다",
    "The café scene was great, a real treat",
    "awful plot and worse acting",
    "최고의 영화 다시 보고 싶다",
] * 40
LABELS = ["strong_neg", "weak_neg", "weak_pos", "strong_pos"]
TINY = dict(hidden_size=32, layers=2, heads=2, vocab_size=300)


def has_jamo(s: str) -> bool:
    return any(0x1100 <= ord(c) <= 0x11FF or 0x3130 <= ord(c) <= 0x318F for c in s)


def ctx(**kw) -> BackboneContext:
    base = dict(model=None, num_labels=4, label_names=LABELS, train_texts=TEXTS, max_length=32, seed=7)
    return BackboneContext(**{**base, **kw})


def batch(tokenizer, texts=TEXTS[:5]):
    return tokenizer(texts, padding=True, truncation=True, return_tensors="pt")


# ------------------------------------------------------------------------------------ tokenizers


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_tokenizer_keeps_korean_syllables_and_accents(kind, tmp_path):
    tok = train_tokenizer(TEXTS, kind, vocab_size=300, lowercase=True, max_length=32)
    assert tok.model_max_length == 32
    for name in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"):
        assert getattr(tok, name) is not None, name
    ids = tok(KOREAN)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    # each token, as text, is made of whole syllables (byte-level BPE tokens are decoded first)
    pieces = [tok.decode([i]) for i in ids[1:-1]]
    assert pieces and not any(has_jamo(p) for p in pieces), pieces
    assert tok.decode(ids, skip_special_tokens=True) == KOREAN
    # lowercasing must not strip accents (stripping would go through NFD and shred Hangul)
    assert tok.decode(tok("The Café")["input_ids"], skip_special_tokens=True) == "the café"
    # decomposed (NFD) input is normalised back to composed syllables
    assert tok(unicodedata.normalize("NFD", KOREAN))["input_ids"] == ids

    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(TEXTS[:6])["input_ids"] == tok(TEXTS[:6])["input_ids"]
    assert again("a b", "c")["input_ids"] == tok("a b", "c")["input_ids"]
    assert (again.pad_token_id, again.mask_token_id, again.model_max_length) == (
        tok.pad_token_id, tok.mask_token_id, 32)


def test_wordpiece_is_bert_style():
    tok = train_tokenizer(TEXTS, "wordpiece", vocab_size=300)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "지루했다" in tok.tokenize(KOREAN)  # a whole word seen in training is one token


def test_bpe_is_roberta_style():
    tok = train_tokenizer(TEXTS, "bpe", vocab_size=300)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert tok("a", "b")["input_ids"][:1] == [0]


# -------------------------------------------------------------------------------------------- hf


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny BERT classifier (2 labels) and its tokenizer, saved like a Hub repository."""
    d = tmp_path_factory.mktemp("tiny-bert")
    tok = train_tokenizer(TEXTS, "wordpiece", vocab_size=300, max_length=64)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_hf_loads_local_model_with_special_tokens(tiny_bert_dir):
    check_reachable(str(tiny_bert_dir), HFOptions())
    before = len(AutoTokenizer.from_pretrained(tiny_bert_dir))
    model, tok = build_hf(ctx(model=str(tiny_bert_dir), special_tokens=["<movie>", "<actor>"]), HFOptions(dropout=0.2))
    assert len(tok) == before + 2
    ids = tok("<movie> was great <actor>", add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<movie>") >= before
    assert ids[-1] == tok.convert_tokens_to_ids("<actor>") >= before
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert model.config.num_labels == 4
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == {n: i for i, n in enumerate(LABELS)}
    assert model.config.hidden_dropout_prob == 0.2
    assert model(**batch(tok)).logits.shape == (5, 4)


def test_hf_asks_for_sdpa_attention_and_falls_back_where_a_model_has_none(tiny_bert_dir, tmp_path):
    """`hf` loads with SDPA attention; a model class without it (ConvBERT) loads with its eager default."""
    from transformers import ConvBertConfig, ConvBertForSequenceClassification

    model, _ = build_hf(ctx(model=str(tiny_bert_dir)), HFOptions())
    assert model.config._attn_implementation == "sdpa"
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    config = ConvBertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, embedding_size=32, num_labels=2)
    ConvBertForSequenceClassification(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, tok = build_hf(ctx(model=str(tmp_path)), HFOptions())
    assert type(model).__name__ == "ConvBertForSequenceClassification"
    assert model.config._attn_implementation == "eager"
    assert model(**batch(tok)).logits.shape == (5, 4)


@pytest.mark.parametrize("model_id", ["/definitely/not/here", "./not-here-either"])
def test_hf_missing_local_path(model_id):
    for fail in (lambda: check_reachable(model_id, HFOptions()),
                 lambda: build_hf(ctx(model=model_id), HFOptions())):
        with pytest.raises(ModelLoadError, match="does not exist") as e:
            fail()
        assert model_id in str(e.value)


def test_hf_hub_id_offline(monkeypatch, tmp_path):
    # huggingface_hub reads HF_HUB_OFFLINE once at import; the constant is what is_offline_mode() returns
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    for fail in (lambda: check_reachable("some-org/no-such-model", HFOptions()),
                 lambda: build_hf(ctx(model="some-org/no-such-model"), HFOptions())):
        with pytest.raises(ModelLoadError, match="offline") as e:
            fail()
        assert "some-org/no-such-model" in str(e.value)


@pytest.fixture
def hub_unreachable(monkeypatch, tmp_path):
    """The Hub at an address where nothing listens (so the probe fails at once, deterministically), an
    empty cache, offline mode off, and runner.core.hub deciding afresh before and after the test."""
    import huggingface_hub.constants

    from runner.core import hub

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    hub.forget()
    yield cache
    hub.forget()


def test_the_hub_is_probed_once_and_a_cached_model_still_loads(hub_unreachable, tiny_bert_dir):
    from runner.core import hub

    first = hub.status()
    assert not first.online and "127.0.0.1:9" in first.describe() and "ConnectError" in first.why
    assert hub.status() is first  # decided once for the process
    with pytest.raises(ModelLoadError, match="could not be reached") as e:
        check_reachable("some-org/not-cached", HFOptions())
    assert "not in the local Hugging Face cache" in str(e.value) and "HF_HUB_OFFLINE=1" in str(e.value)
    # the same model in the cache (as `hf download` lays it out): loads with no network
    snapshot = hub_unreachable / "models--some-org--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for f in tiny_bert_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (hub_unreachable / "models--some-org--tiny" / "refs").mkdir()
    (hub_unreachable / "models--some-org--tiny" / "refs" / "main").write_text("0" * 40)
    check_reachable("some-org/tiny", HFOptions())
    model, _ = build_hf(ctx(model="some-org/tiny"), HFOptions())
    assert model.config.num_labels == 4


def test_hf_refuses_pickle_only_weights(tiny_bert_dir, tmp_path):
    d = tmp_path / "bin-only"
    d.mkdir()
    for f in tiny_bert_dir.iterdir():
        if f.name != "model.safetensors":
            (d / f.name).write_bytes(f.read_bytes())
    (d / "pytorch_model.bin").write_bytes(b"never unpickled")
    for fail in (lambda: check_reachable(str(d), HFOptions()), lambda: build_hf(ctx(model=str(d)), HFOptions())):
        with pytest.raises(ModelLoadError, match="no safetensors weights"):
            fail()


def test_diagnose_hub_errors():
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    from huggingface_hub.utils import httpx  # the httpx huggingface_hub uses (2.x vendors it as httpx2)

    def response(status):
        return httpx.Response(status, request=httpx.Request("GET", "https://huggingface.co/some-org/model"))

    for exc, expected in [(RepositoryNotFoundError("404 Client Error", response=response(404)), "spelling"),
                          (GatedRepoError("403 Client Error", response=response(403)), "gated"),
                          (ConnectionError("Name or service not known"), "could not be reached"),
                          (httpx.ConnectError("Name or service not known"), "could not be reached")]:
        wrapped = OSError("transformers wrapper")
        wrapped.__cause__ = exc
        msg = str(_diagnose("some-org/model", wrapped, HFOptions()))
        assert "some-org/model" in msg and expected in msg, msg


# --------------------------------------------------------------------------------------- scratch


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_scratch_forward_and_reload(arch, tmp_path):
    model, tok = build_scratch(ctx(special_tokens=["<movie>"]), ScratchOptions(architecture=arch, **TINY))
    assert "<movie>" in tok.tokenize("<movie> 최고")
    assert model.get_input_embeddings().num_embeddings == len(tok)
    model.eval()
    inputs = batch(tok)
    logits = model(**inputs).logits
    assert logits.shape == (5, 4)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path, use_safetensors=True).eval()
    assert again.config.id2label[1] == "weak_neg"
    inputs2 = batch(AutoTokenizer.from_pretrained(tmp_path))
    assert torch.equal(inputs2["input_ids"], inputs["input_ids"])
    torch.testing.assert_close(again(**inputs2).logits, logits)


def test_scratch_is_seeded():
    a, _ = build_scratch(ctx(), ScratchOptions(**TINY))
    b, _ = build_scratch(ctx(), ScratchOptions(**TINY))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_scratch_options_validation():
    with pytest.raises(ValueError, match="divisible by heads"):
        ScratchOptions(hidden_size=30, heads=4)
    with pytest.raises(ValueError):
        ScratchOptions(depth=3)  # unknown key
    assert (ScratchOptions().tokenizer, ScratchOptions(architecture="roberta").tokenizer) == ("wordpiece", "bpe")
    with pytest.raises(ValueError, match="does not fit architecture 'roberta'"):
        ScratchOptions(architecture="roberta", tokenizer="words")
    with pytest.raises(ValueError, match="does not fit architecture 'bert'"):
        ScratchOptions(tokenizer="bpe")


@pytest.mark.parametrize("backbone", ["scratch", "gru"])
def test_a_checkpoint_saved_before_the_tokenizer_option_loads_with_its_own_tokenizer(backbone, tmp_path):
    """A member saved by runner before `tokenizer` existed: runner.json's options have no such key and
    its tokenizer files hold the old `words` vocabulary. load_checkpoint reads the saved tokenizer (no
    new vocabulary is trained) and the same weights give the same logits."""
    import json

    from runner.plugins.registry import load_registry

    registry = load_registry(REPO / "plugins")
    comp = registry.backbone(backbone)
    options = comp.options.model_validate({**(TINY if backbone == "scratch" else dict(embedding_dim=16, hidden_size=16)),
                                           "tokenizer": "words"})
    model, tok = comp.build(ctx(), options)
    model.eval()
    tok.save_pretrained(tmp_path)
    if backbone == "scratch":
        model.save_pretrained(tmp_path)
    else:
        save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    stored = {k: v for k, v in options.model_dump(mode="json").items() if k != "tokenizer"}  # as runner wrote it
    write_runner_json(tmp_path, backbone, stored, LABELS, 32, None)
    assert "tokenizer" not in json.loads((tmp_path / "runner.json").read_text())["options"]

    again, tok2, _ = load_checkpoint(tmp_path, registry)
    assert tok2.get_vocab() == tok.get_vocab()
    assert tok2.tokenize("스토리가 지루해서") == tok.tokenize("스토리가 지루해서")
    torch.testing.assert_close(again(**batch(tok2)).logits, model(**batch(tok)).logits)
    # the stored options read as what the checkpoint was trained with
    assert comp.options.model_validate(stored, context={"runner_stored": True}).tokenizer == "words"


# ------------------------------------------------------------------------------------ gru plugin


def test_gru_plugin_trains_saves_and_reloads(tmp_path):
    from runner.plugins.registry import load_registry

    registry = load_registry(REPO / "plugins")
    comp = registry.get("backbones", "gru")
    assert comp is not None and comp.origin.endswith("gru_encoder.py")
    options = comp.options.model_validate({"embedding_dim": 16, "hidden_size": 16})
    model, tok = comp.build(ctx(), options)
    assert not hasattr(model, "save_pretrained")  # a plain torch module, not a Hugging Face model

    inputs = batch(tok)
    out = model(**inputs, labels=torch.tensor([0, 1, 2, 3, 0]))
    assert out.logits.shape == (5, 4)
    out.loss.backward()
    assert model.head.weight.grad is not None

    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    tok.save_pretrained(tmp_path)
    write_runner_json(tmp_path, "gru", options.model_dump(), LABELS, 32, None)
    model.eval()
    expected = model(**inputs).logits
    again, tok2, info = load_checkpoint(tmp_path, registry)
    assert info["backbone"] == "gru"
    torch.testing.assert_close(again(**batch(tok2)).logits, expected)


def test_scratch_tokenizers_are_byte_identical_in_every_process(tmp_path):
    """Same texts, same files, in fresh interpreters with different PYTHONHASHSEED (Rust's hash maps
    are seeded afresh in every process anyway): tokenizers' own WordPieceTrainer gives another
    vocabulary in every process, runner's tokenizers never do (runner.data.tokenization)."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, pathlib, sys; from runner import synthetic; from runner.data.tokenization import train_tokenizer\n"
        "texts = synthetic.generate(300, seed=1, language='ko')[0] + synthetic.generate(300, seed=1)[0]\n"
        "for kind in ('wordpiece', 'bpe', 'words'):\n"
        "    out = pathlib.Path(sys.argv[1]) / kind\n"
        "    train_tokenizer(texts, kind, vocab_size=500).save_pretrained(out)\n"
        "    print(kind, *sorted((f.name, hashlib.sha256(f.read_bytes()).hexdigest()) for f in out.iterdir()))\n"
        # the trainer runner does not use, as a witness that these processes do order hash maps apart
        "from tokenizers import Tokenizer, models, pre_tokenizers, trainers\n"
        "t = Tokenizer(models.WordPiece(unk_token='[UNK]')); t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()\n"
        "t.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=500, show_progress=False))\n"
        "print('witness', hashlib.sha256(t.to_str().encode()).hexdigest(), file=sys.stderr)\n"
    )
    outs, witnesses = set(), set()
    for seed in ("0", "1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / seed)], env=env, capture_output=True,
                              text=True, check=True)
        outs.add(proc.stdout)
        witnesses.add(next(x for x in proc.stderr.splitlines() if x.startswith("witness")))
    assert len(outs) == 1, outs
    assert "tokenizer.json" in next(iter(outs))
    assert len(witnesses) > 1, ("tokenizers' WordPieceTrainer gave one vocabulary in 3 processes: either it is "
                                "deterministic now (runner.data.tokenization's workaround may go) or this test no "
                                "longer runs apart processes")


def test_wordpiece_splits_unseen_korean_forms_into_subwords_never_jamo():
    """Inflected forms the training texts never had split into learned pieces (stems, endings), not
    into single syllables as the old `words` vocabulary does, never into jamo; NFD input gives the
    same ids."""
    from runner.data import synthetic

    texts = synthetic.generate(1500, seed=2, language="ko")[0]
    tok = train_tokenizer(texts, "wordpiece", vocab_size=8000)
    old = train_tokenizer(texts, "words", vocab_size=8000)
    seen = " ".join(texts)
    for word in ("지루했었는데", "훌륭했었지만", "최악이었습니다", "아름다웠었다"):
        assert word not in seen and all(c in seen for c in word), word  # unseen, but every syllable known
        pieces = tok.tokenize(word)
        assert len(pieces) > 1 and tok.unk_token not in pieces, pieces
        assert not any(has_jamo(p) for p in pieces), pieces
        assert any(len(p.removeprefix("##")) > 1 for p in pieces), pieces  # not all single characters
        assert len(pieces) < len(old.tokenize(word)) == len(word)  # the old vocabulary: one per syllable
        assert tok(unicodedata.normalize("NFD", word))["input_ids"] == tok(word)["input_ids"]
    assert tok.tokenize("지루했다") == ["지루했다"]  # a frequent word of the training texts stays whole


def test_hf_member_trains_from_a_model_folder_beside_the_spec(tiny_bert_dir, tmp_path, monkeypatch):
    """`model = "models/tiny"` is found beside the spec, like data paths, wherever runner is run from."""
    import shutil as _shutil

    from typer.testing import CliRunner

    from runner.cli import app
    from runner.store import Store

    project = tmp_path / "project"
    _shutil.copytree(tiny_bert_dir, project / "models" / "tiny")
    (project / "spec.toml").write_text(
        'name = "hf-local"\n[data]\nsource = "synthetic"\nvalid = 0.2\nmax_length = 32\n'
        "[data.options]\nsize = 120\n[train]\nepochs = 1\nbatch_size = 16\n"
        '[[members]]\nname = "tiny"\nbackbone = "hf"\nmodel = "models/tiny"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(app, ["apply", str(project / "spec.toml"), "--store", str(tmp_path / "r.duckdb")])
    assert result.exit_code == 0, result.stderr
    model = Store(tmp_path / "r.duckdb").query("SELECT model FROM members")[1][0][0]
    assert model == str((project / "models" / "tiny").resolve())
