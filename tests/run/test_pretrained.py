"""A real pretrained encoder through the `hf` backbone: all-MiniLM-L6-v2 from the package registry
(tests/pretrained.py; the `minilm` fixture), on a few hundred synthetic reviews at a small max_length.

What a real checkpoint brings that the tiny models the other tests save lack: a real vocabulary and
tokenizer config, a pooler, no classification head, no masked-LM head, sentence-transformers files
beside the model, and a tokenizer.json that pads and truncates at 128. Checked here: validate's one
line about the new head, the tokenizer diagnostics (Korean through the English vocabulary too),
validate -> apply -> compare -> predict -> export -> runner.load -> `pipeline()`, an exported
tokenizer on a text longer than 512 tokens, and [adapt] refused without `adapt.new_head` and run
with it. Every test is marked `pretrained` (`-m "not pretrained"` skips them); the ones that train,
`slow` too.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from predict_helpers import cli

from runner.store import Store

pytestmark = pytest.mark.pretrained

SPEC = """
name = "{name}"
seed = 3

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = {max_length}
special_tokens = {special}

[data.options]
size = {size}
language = "{language}"

[train]
epochs = 1
batch_size = 8
gradient_accumulation_steps = {accumulation}
learning_rate = 5e-5

[loss]
name = "focal"
alpha = 1.0
gamma = 2.0
label_smoothing = 0.1
{adapt}
[[members]]
name = "minilm"
backbone = "hf"
model = "{model}"
"""
ADAPT = """
[adapt]
epochs = 1
batch_size = 16
learning_rate = 1e-4
{new_head}
"""
VOCAB = 30522  # all-MiniLM-L6-v2's uncased WordPiece
LONG = " ".join(["the plot was slow but the acting was superb"] * 80)  # 720 words: over 512 tokens


def write(d: Path, model: Path, name: str = "minilm", language: str = "en", max_length: int = 48, size: int = 300,
          special: str = "[]", accumulation: int = 1, adapt: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    spec = d / f"{name}.toml"
    spec.write_text(SPEC.format(name=name, language=language, max_length=max_length, size=size, special=special,
                                accumulation=accumulation, adapt=adapt, model=model))
    return spec


def ok(*args) -> tuple[str, str]:
    """(stdout, stderr) of a command that must succeed, each with its lines joined: the summary wraps
    long lines at the terminal's width."""
    code, out, err = cli(*args)
    assert code == 0, err + out
    return flat(out), flat(err)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_validate_says_in_one_line_that_the_head_is_new_and_measures_the_tokenizer(minilm, tmp_path):
    out, err = ok("validate", write(tmp_path, minilm), "--store", tmp_path / "r.duckdb")
    assert "minilm: the classification head is new: classifier.{bias, weight} (random, seed 3)" in out
    assert f"not used from {minilm.name}: none" in out  # the pooler is used by the classifier
    assert "Some weights of" not in out + err  # transformers' own multi-line report stays hidden
    tokens = re.search(r"minilm: ([\d.]+) tokens per text \(longest (\d+)\), ([\d.]+)% \[UNK\], ([\d.]+)% cut at "
                       r"max_length 48 \(train, valid, test\)", out)
    assert tokens is not None, out
    assert 5 < float(tokens.group(1)) < 48 and float(tokens.group(3)) == 0.0 and float(tokens.group(4)) < 5
    assert "warning" not in err
    assert not (tmp_path / "r.duckdb").exists()


def test_korean_through_the_english_vocabulary_is_a_warning(minilm, tmp_path):
    out, err = ok("validate", write(tmp_path, minilm, language="ko", max_length=32, size=200), "--store",
                  tmp_path / "r.duckdb")
    unknown = re.search(r"warning: minilm: ([\d.]+)% of the tokens are \[UNK\] .*in (\d+)% of the texts", err)
    assert unknown is not None, err
    assert float(unknown.group(1)) > 1.0
    cut = re.search(r"warning: minilm: ([\d.]+)% of the texts are longer than max_length 32 tokens", err)
    assert cut is not None and float(cut.group(1)) > 5.0, err


def test_adapt_without_a_masked_lm_head_is_exit_2_naming_the_head_unless_new_head(minilm, tmp_path):
    spec = write(tmp_path, minilm, adapt=ADAPT.format(new_head=""))
    code, out, err = cli("validate", spec, "--store", tmp_path / "r.duckdb")
    assert code == 2, err + out
    err = flat(err)
    assert "adapt" in err and "has no masked-LM head" in err and "cls.predictions" in err
    assert f"ln({VOCAB})" in err and "adapt.new_head = true" in err
    assert "Traceback" not in err and not (tmp_path / "r.duckdb").exists()

    out, err = ok("validate", write(tmp_path, minilm, adapt=ADAPT.format(new_head="new_head = true")), "--store",
                  tmp_path / "r.duckdb")
    assert re.search(r"warning: minilm: \[adapt\] starts a new masked-LM head, \d+ tensors at random "
                     r"\(cls\.predictions", err), err


@pytest.fixture(scope="module")
def applied(minilm, tmp_path_factory):
    """One epoch of MiniLM, with a special token added (so the embeddings are resized) and gradient
    accumulation 4 as the notebook had."""
    d = tmp_path_factory.mktemp("minilm")
    spec = write(d, minilm, special='["[MOVIE]"]', accumulation=4)
    store = d / "results.duckdb"
    out, _ = ok("validate", spec, "--store", store)
    assert "classification head is new" in out
    _, err = ok("apply", spec, "--store", store)
    export = d / "export"
    ok("export", "minilm", export, "--store", store)
    return {"dir": d, "spec": spec, "store": store, "apply_err": err, "export": export}


@pytest.mark.slow
def test_apply_trains_stores_the_token_stats_and_the_resized_embeddings(applied):
    from safetensors import safe_open

    assert "minilm: the classification head is new: classifier.{bias, weight}" in applied["apply_err"]
    st = Store(applied["store"])
    run = st.run("minilm")
    assert run.status == "finished"
    rows = st.token_stats(run.run_id)
    assert [(r["member"], r["split"]) for r in rows] == [("minilm", s) for s in ("train", "valid", "test")]
    assert [r["texts"] for r in rows] == [180, 60, 60] and all(r["unknown"] == 0 for r in rows)
    manifest = json.loads((applied["export"] / "manifest.json").read_text())
    member = applied["export"] / manifest["members"][0]["path"]
    with safe_open(str(member / "model.safetensors"), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))
        assert f.get_slice(key).get_shape()[0] == VOCAB + 1  # [MOVIE] got a row
    assert run.spec["train"]["gradient_accumulation_steps"] == 4 and run.spec["data"]["special_tokens"] == ["[MOVIE]"]


@pytest.mark.slow
def test_compare_report_and_predict_read_the_run(applied, tmp_path):
    out, _ = ok("compare", "minilm", "--store", applied["store"])
    assert "minilm" in out
    report = tmp_path / "report.html"
    ok("report", "minilm", "--store", applied["store"], "--out", report)
    page = report.read_text()
    assert "Tokenizers" in page and "cut at max_length" in page
    out, _ = ok("predict", "minilm", "--store", applied["store"], "--text", "a superb film", "--text", LONG)
    assert "strong_positive" in out or "weak_positive" in out or "negative" in out


@pytest.mark.slow
def test_the_exported_member_loads_in_runner_and_in_a_plain_pipeline_alike(applied):
    from tokenizers import Tokenizer
    from transformers import pipeline

    import runner

    export = applied["export"]
    manifest = json.loads((export / "manifest.json").read_text())
    member = export / manifest["members"][0]["path"]
    plain = Tokenizer.from_file(str(member / "tokenizer.json"))
    assert len(plain.encode(LONG).ids) == 48  # the member's own max_length, not the original's 128
    assert len(plain.encode("a superb film").ids) < 10  # and no fixed padding
    texts = ["a superb film, stunning from start to end", "awful and dull", "decent but slow", LONG]
    loaded = runner.load(export)
    classify = pipeline("text-classification", model=str(member), truncation=True, device="cpu")
    got = [r["label"] for r in classify(texts)]
    assert got == loaded.predict(texts)


@pytest.mark.slow
def test_adapt_with_a_new_head_warns_and_sets_its_first_loss_against_ln_v(minilm, tmp_path):
    from safetensors import safe_open

    spec = write(tmp_path, minilm, size=200, adapt=ADAPT.format(new_head="new_head = true"))
    store = tmp_path / "r.duckdb"
    _, err = ok("apply", spec, "--store", store)
    assert "warning: minilm: [adapt] starts a new masked-LM head" in err
    key = Store(store).query("SELECT adapt_key FROM members")[1][0][0]
    before = re.search(rf"adapt: {key}: held-out MLM loss before adapting ([\d.]+), (above|below) ln\({VOCAB}\) = "
                       rf"{math.log(VOCAB):.3f}", err)
    assert before is not None, err
    # a head of random weights knows nothing of the vocabulary: near ln(V) = 10.33 or above it (10.8 on
    # 3,000 English reviews), where a trained masked-LM head starts at 2 to 4
    assert float(before.group(1)) > 9.0
    stored = Store(store).query("SELECT mlm_loss FROM adapt_losses WHERE adapt_key = ? AND split = 'heldout' "
                                "AND epoch = 0", [key])[1][0][0]
    assert stored == pytest.approx(float(before.group(1)), abs=1e-3)
    with safe_open(str(tmp_path / "adapted" / key / "model.safetensors"), "pt") as f:
        assert "cls.predictions.transform.dense.weight" in set(f.keys())
