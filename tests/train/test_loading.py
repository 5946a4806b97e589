"""What a pretrained checkpoint's loading left out (runner.train.loading), on a tiny BertModel saved
the way sentence-embedding checkpoints are (no task head, no masked-LM head, a pooler), and the
tokenizer files runner ships set to its own truncation (runner.train.tokenizer_files)."""

from __future__ import annotations

import json
import math

import pytest

from runner.train import loading, tokenizer_files

WORDS = "the film was good bad dull superb slow".split()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny BertModel and its tokenizer, saved with a tokenizer.json that pads and truncates at 128."""
    import torch
    from transformers import BertConfig, BertModel

    from runner.data.tokenization import train_tokenizer

    d = tmp_path_factory.mktemp("encoder")
    tok = train_tokenizer([" ".join(WORDS)] * 4, "words", vocab_size=100, max_length=128)
    tok.backend_tokenizer.enable_truncation(128)
    tok.backend_tokenizer.enable_padding(length=128, pad_id=tok.pad_token_id, pad_token=tok.pad_token)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(d)
    return d


def loaded(auto_class, folder, **kwargs):
    model, info = auto_class.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    loading.record(model, folder.name, info)
    return loading.of(model)


def test_a_classifier_from_an_encoder_has_a_new_head_and_uses_the_pooler(encoder):
    from transformers import AutoModelForSequenceClassification

    report = loaded(AutoModelForSequenceClassification, encoder, num_labels=3)
    assert report.head == ("classifier.bias", "classifier.weight") and report.unused == ()
    assert loading.head_line("m", report, 7) == (f"m: the classification head is new: classifier.{{bias, weight}} "
                                                 f"(random, seed 7); not used from {encoder.name}: none")


def test_a_masked_lm_from_an_encoder_has_a_new_head_and_leaves_the_pooler(encoder):
    from transformers import AutoModelForMaskedLM

    report = loaded(AutoModelForMaskedLM, encoder)
    assert report.head and all(k.startswith("cls.predictions.") for k in report.head)
    assert report.unused and all("pooler" in k for k in report.unused)
    assert loading.brief(report.head).startswith("cls.predictions.{")


def test_a_model_built_from_a_config_has_no_report():
    from transformers import BertConfig, BertModel

    assert loading.of(BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=32))) is None


def test_brief_names_a_common_prefix_once():
    assert loading.brief(["a.b.weight", "a.b.bias"]) == "a.b.{bias, weight}"
    assert loading.brief(["x.weight"]) == "x.weight"
    assert loading.brief(["x.w", "y.w"]) == "x.w, y.w"
    assert loading.brief([]) == "none"
    assert loading.uniform_loss(30522) == pytest.approx(math.log(30522))


def test_shipped_tokenizer_files_truncate_at_max_length_and_pad_nothing(encoder, tmp_path):
    import shutil

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    folder = tmp_path / "member"
    shutil.copytree(encoder, folder)
    long = " ".join(WORDS * 80)  # 640 words: longer than the 512 positions a BERT has
    assert len(Tokenizer.from_file(str(folder / "tokenizer.json")).encode("the film").ids) == 128  # padded
    tokenizer_files.fit_to_max_length(folder, 24)
    plain = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert len(plain.encode(long).ids) == 24 and len(plain.encode("the film").ids) == 4  # [CLS] the film [SEP]
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 24
    hf = AutoTokenizer.from_pretrained(folder)
    assert len(hf(long, truncation=True)["input_ids"]) == 24 and len(hf("the film")["input_ids"]) == 4
    before = (folder / "tokenizer.json").stat().st_mtime_ns
    tokenizer_files.fit_to_max_length(folder, 24)  # already so: not rewritten
    assert (folder / "tokenizer.json").stat().st_mtime_ns == before
