"""The model card `runner export` writes (DIR/README.md): its numbers are the store's, and each member
folder beside it loads in plain transformers with the probabilities the store holds."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from predict_helpers import cli, stored_probs, trained

from runner.store import Store

TOLERANCE = 1e-4  # as tests/use/test_export.py: probabilities recomputed by another code path, float32


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    d = tmp_path_factory.mktemp("card") / "model"
    code, out, err = cli("export", run.run_id, d, "--store", run.store)
    assert code == 0, err + out
    return d


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_the_header_and_the_results_are_the_stores(run, exported):
    text = (exported / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    st = Store(run.store)
    record = st.run(run.run_id)
    strategy = record.selected_strategy
    assert header["labels"] == run.labels and header["library_name"] == "transformers"
    index = header["model-index"][0]["results"][0]
    assert index["dataset"]["name"] == run.dataset_id
    value = {m["type"]: m["value"] for m in index["metrics"]}
    stored = {name: st.checkpoint_value(run.run_id, "ensemble", "ensemble", strategy, "test", name)
              for name in ("accuracy", "f1_macro", "log_loss")}
    assert value == {"accuracy": stored["accuracy"], "f1": stored["f1_macro"], "log_loss": stored["log_loss"]}

    rows = {r[0]: r for r in _table_rows(text, "| model |")}
    assert set(rows) == {"a", "b", "c", "ensemble"}
    for m in ("a", "b", "c"):
        checkpoint = record.member(m).selected_checkpoint
        assert rows[m][1] == checkpoint
        for col, name in zip(rows[m][3:], ("accuracy", "f1_macro", "log_loss")):
            assert col == f"{st.checkpoint_value(run.run_id, 'member', m, checkpoint, 'test', name):.4f}"
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["metrics"]["ensemble"] == stored
    assert f"Spec hash `{record.spec_hash}`" in text and "[[members]]" in text


def test_confusion_matrices_and_class_shares_are_the_stores(run, exported):
    text = (exported / "README.md").read_text(encoding="utf-8")
    st = Store(run.store)
    record = st.run(run.run_id)
    labels = np.array([r[0] for r in st.query("SELECT label FROM examples WHERE dataset_id = ? AND split = 'test' "
                                              "ORDER BY idx", [run.dataset_id])[1]])
    for m in ("a", "ensemble"):
        kind, checkpoint = (("member", record.member(m).selected_checkpoint) if m != "ensemble"
                            else ("ensemble", record.selected_strategy))
        pred = stored_probs(run.store, run.run_id, kind, m, checkpoint, "test").argmax(axis=1)
        expected = [[int(((labels == i) & (pred == j)).sum()) for j in range(len(run.labels))]
                    for i in range(len(run.labels))]
        rows = _table_rows(text.split(f"Confusion matrix of {m} ")[1], "| true")
        assert [[int(c) for c in r[1:]] for r in rows] == expected
    data = {r[0]: r for r in _table_rows(text, "| split |")}
    for split, counts in st.label_counts(run.dataset_id).items():
        assert int(data[split][1]) == sum(counts)
        assert data[split][2:] == [f"{c / sum(counts):.1%}" for c in counts]


def test_each_member_folder_loads_in_plain_transformers(run, exported):
    from transformers import pipeline

    st = Store(run.store)
    record = st.run(run.run_id)
    texts = [r[0] for r in st.query("SELECT text FROM examples WHERE dataset_id = ? AND split = 'test' ORDER BY idx "
                                    "LIMIT 12", [run.dataset_id])[1]]
    for m in ("a", "b"):
        pipe = pipeline("text-classification", model=str(exported / "members" / m), top_k=None, device=-1)
        scores = pipe(texts, truncation=True, max_length=40)
        got = np.array([[{d["label"]: d["score"] for d in row}[name] for name in run.labels] for row in scores])
        expected = stored_probs(run.store, run.run_id, "member", m, record.member(m).selected_checkpoint, "test")[:12]
        assert np.abs(got - expected).max() <= TOLERANCE
    assert re.search(r"members/", (exported / "README.md").read_text())
