"""Data: the file loaders agree, fraction splits are stratified and seeded, label mapping, and every
bad-data error reaches the user through `runner validate` with exit 2 and the file named.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import TINY_LABELS, tiny_rows, write_csv
from runner.data import RawDataset, prepare, stratified_split
from runner.errors import DataError
from runner.plugins import load_registry
from runner.spec import DataSpec, load_and_resolve

MEMBER = '[[members]]\nbackbone = "scratch"\noptions = { hidden_size = 32, heads = 2, layers = 1 }\n'


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def data_spec(write_spec, source="csv", train="tiny.csv", valid: str | float = 0.2, test=None, extra=""):
    lines = [f'source = "{source}"', f'train = "{train}"', f"valid = {json.dumps(valid)}"]
    if test is not None:
        lines.append(f"test = {json.dumps(test)}")
    return write_spec('name = "t"\n[data]\n' + "\n".join(lines) + "\n" + extra + "\n" + MEMBER)


def load(spec_path: Path, registry):
    from runner.data import load_raw

    resolved = load_and_resolve(spec_path, registry)
    spec = resolved.spec
    raw = load_raw(spec.data, registry, spec_path, spec.seed, resolved.data_options)
    return prepare(spec.data, raw, spec.seed)


def validate_fails(run_cli, spec_path: Path) -> str:
    code, out, err = run_cli("validate", spec_path, "--no-check-models")
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    return err


def imbalanced_rows(n: int) -> list[dict]:
    """`n` rows with the notebook's class shares: 30% / 12% / 25% / 33%."""
    shares = [0.30, 0.12, 0.25, 0.33]
    labels = np.repeat(np.arange(4), [round(s * n) for s in shares])[:n]
    return [{"text": f"review number {i}", "label": TINY_LABELS[int(c)]} for i, c in enumerate(labels)]


def shares(labels: np.ndarray, k: int = 4) -> np.ndarray:
    return np.bincount(labels, minlength=k) / len(labels)


# ---------------------------------------------------------------------------- loaders agree


def test_csv_jsonl_parquet_give_the_same_examples(tmp_path, tiny_csv, write_spec, registry):
    rows = tiny_rows(60)
    with (tmp_path / "tiny.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "tiny.parquet")

    prepared = {}
    for source, name in [("csv", "tiny.csv"), ("jsonl", "tiny.jsonl"), ("parquet", "tiny.parquet")]:
        prepared[source] = load(data_spec(write_spec, source, name), registry)
    csv_, jsonl, parquet = prepared["csv"], prepared["jsonl"], prepared["parquet"]
    assert csv_.label_names == sorted(TINY_LABELS)
    assert len(csv_.splits["train"]) + len(csv_.splits["valid"]) == 60
    for other in (jsonl, parquet):
        assert other.label_names == csv_.label_names
        for split in ("train", "valid"):
            assert other.splits[split].texts == csv_.splits[split].texts
            np.testing.assert_array_equal(other.splits[split].labels, csv_.splits[split].labels)
        assert other.dataset_id == csv_.dataset_id


def test_dataset_id_changes_with_the_content(tmp_path, write_spec, registry):
    rows = tiny_rows(60)
    write_csv(tmp_path / "tiny.csv", rows)
    first = load(data_spec(write_spec), registry).dataset_id
    rows[5]["text"] += "!"
    write_csv(tmp_path / "tiny.csv", rows)
    assert load(data_spec(write_spec), registry).dataset_id != first


def test_texts_that_look_like_numbers_stay_text(tmp_path, write_spec, registry):
    rows = [{"text": str(1000 + i), "label": TINY_LABELS[i % 4]} for i in range(40)]
    write_csv(tmp_path / "tiny.csv", rows)
    data = load(data_spec(write_spec), registry)
    assert all(isinstance(t, str) for t in data.splits["train"].texts)
    assert "1000" in data.splits["train"].texts + data.splits["valid"].texts


def test_delimiter_option(tmp_path, write_spec, registry):
    (tmp_path / "tiny.tsv").write_text("text\tlabel\n" + "".join(
        f"a, b and c {i}\t{TINY_LABELS[i % 4]}\n" for i in range(40)))
    data = load(data_spec(write_spec, train="tiny.tsv", extra='[data.options]\ndelimiter = "\\t"'), registry)
    assert data.splits["train"].texts[0].startswith("a, b and c")


# ---------------------------------------------------------------------------- fraction splits


def fraction_split(rows, valid=0.15, test=None, seed=0):
    spec = DataSpec(source="csv", train="x", valid=valid, test=test)
    return prepare(spec, RawDataset(splits={"train": rows}), seed)


def test_fraction_splits_are_stratified():
    data = fraction_split(imbalanced_rows(1000), valid=0.15, test=0.15)
    whole = shares(np.concatenate([data.splits[s].labels for s in ("train", "valid", "test")]))
    for split in ("train", "valid", "test"):
        assert np.abs(shares(data.splits[split].labels) - whole).max() < 0.02, split


def test_valid_and_test_fractions_are_of_the_whole():
    data = fraction_split(imbalanced_rows(1000), valid=0.15, test=0.15)
    sizes = {s: len(data.splits[s]) for s in ("train", "valid", "test")}
    assert abs(sizes["valid"] - 150) <= 3 and abs(sizes["test"] - 150) <= 3
    assert sum(sizes.values()) == 1000
    texts = [t for s in ("train", "valid", "test") for t in data.splits[s].texts]
    assert len(set(texts)) == 1000  # disjoint, nothing lost


def test_fraction_splits_are_seeded():
    rows = imbalanced_rows(500)
    a = fraction_split(rows, seed=1)
    b = fraction_split(rows, seed=1)
    c = fraction_split(rows, seed=2)
    assert a.splits["valid"].texts == b.splits["valid"].texts
    assert a.dataset_id == b.dataset_id
    assert set(a.splits["valid"].texts) != set(c.splits["valid"].texts)
    assert a.dataset_id != c.dataset_id


def test_stratified_split_keeps_one_of_each_class():
    labels = np.array([0] * 10 + [1])
    keep, take = stratified_split(labels, 0.5, seed=0)
    assert 1 in labels[keep]
    assert len(np.intersect1d(keep, take)) == 0 and len(keep) + len(take) == len(labels)


def test_fraction_and_file_for_the_same_split_is_an_error():
    rows = tiny_rows(40)
    spec = DataSpec(source="csv", train="x", valid=0.2)
    with pytest.raises(DataError, match="valid"):
        prepare(spec, RawDataset(splits={"train": rows, "valid": rows[:8]}), 0)


# ---------------------------------------------------------------------------- labels


def test_integer_labels_map_to_names_by_index(tmp_path, write_spec, registry):
    rows = [{"text": f"review {i}", "label": i % 4} for i in range(40)]
    write_csv(tmp_path / "tiny.csv", rows)
    names = '["neg", "meh", "ok", "great"]'
    data = load(data_spec(write_spec, extra=f"labels = {names}"), registry)
    assert data.label_names == ["neg", "meh", "ok", "great"]
    all_ = {t: int(y) for s in ("train", "valid") for t, y in zip(data.splits[s].texts, data.splits[s].labels)}
    assert all(all_[f"review {i}"] == i % 4 for i in range(40))


def test_string_labels_map_to_names_by_name(tmp_path, write_spec, registry):
    names = ["strong_positive", "weak_positive", "weak_negative", "strong_negative"]  # not sorted
    rows = [{"text": f"review {i}", "label": TINY_LABELS[i % 4]} for i in range(40)]
    write_csv(tmp_path / "tiny.csv", rows)
    data = load(data_spec(write_spec, extra=f"labels = {json.dumps(names)}"), registry)
    assert data.label_names == names
    for s in ("train", "valid"):
        for t, y in zip(data.splits[s].texts, data.splits[s].labels):
            i = int(t.split()[1])
            assert names[int(y)] == TINY_LABELS[i % 4]


def test_labels_without_names_are_sorted(tmp_path, tiny_csv, write_spec, registry):
    data = load(data_spec(write_spec), registry)
    assert data.label_names == sorted(TINY_LABELS)
    assert data.class_counts("train") == [12, 12, 12, 12]


def test_test_file_without_labels_is_accepted(tmp_path, tiny_csv, write_spec, registry, run_cli):
    write_csv(tmp_path / "test.csv", [{"text": f"unlabelled {i}"} for i in range(10)])
    spec = data_spec(write_spec, test="test.csv")
    data = load(spec, registry)
    assert data.splits["test"].labels is None
    assert len(data.splits["test"]) == 10
    code, out, err = run_cli("validate", spec, "--no-check-models")
    assert code == 0, err


def test_test_file_with_labels_is_used(tmp_path, tiny_csv, write_spec, registry):
    write_csv(tmp_path / "test.csv", tiny_rows(8))
    data = load(data_spec(write_spec, test="test.csv"), registry)
    assert data.splits["test"].labels.tolist() == [data.label_names.index(r["label"]) for r in tiny_rows(8)]


# ---------------------------------------------------------------------------- bad data, through the CLI


def test_missing_text_column(tmp_path, write_spec, run_cli):
    write_csv(tmp_path / "tiny.csv", [{"review": r["text"], "label": r["label"]} for r in tiny_rows(40)])
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "no column 'text'" in err and "review" in err


def test_missing_label_column(tmp_path, write_spec, run_cli):
    write_csv(tmp_path / "tiny.csv", [{"text": r["text"]} for r in tiny_rows(40)])
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "no column 'label'" in err


def test_custom_column_names(tmp_path, write_spec, registry):
    write_csv(tmp_path / "tiny.csv", [{"review": r["text"], "y": r["label"]} for r in tiny_rows(40)])
    data = load(data_spec(write_spec, extra='text_column = "review"\nlabel_column = "y"'), registry)
    assert len(data.splits["train"]) == 32


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_names_the_row(tmp_path, write_spec, run_cli, text):
    rows = tiny_rows(40)
    rows[6]["text"] = text
    write_csv(tmp_path / "tiny.csv", rows)
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "row 7" in err and "empty 'text'" in err


def test_label_outside_the_label_set(tmp_path, tiny_csv, write_spec, run_cli):
    err = validate_fails(run_cli, data_spec(write_spec, extra='labels = ["strong_negative", "weak_negative", '
                                                              '"weak_positive"]'))
    assert "tiny.csv" in err and "'strong_positive'" in err and "not in the label set" in err
    assert "[data].labels" in err


def test_empty_file(tmp_path, write_spec, run_cli):
    (tmp_path / "tiny.csv").write_bytes(b"")
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "empty" in err


def test_header_only_file(tmp_path, write_spec, run_cli):
    (tmp_path / "tiny.csv").write_text("text,label\n")
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "empty" in err


def test_non_utf8_bytes(tmp_path, write_spec, run_cli):
    body = "".join(f"review {i},{TINY_LABELS[i % 4]}\n" for i in range(40)).encode()
    (tmp_path / "tiny.csv").write_bytes(b"text,label\ncaf\xe9 au lait,weak_positive\n" + body)
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "UTF-8" in err


def test_ragged_csv_row(tmp_path, write_spec, run_cli):
    lines = [f"review {i},{TINY_LABELS[i % 4]}" for i in range(40)]
    lines[20] = "a review, with a comma,weak_positive"
    (tmp_path / "tiny.csv").write_text("text,label\n" + "\n".join(lines) + "\n")
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "Expected 2 columns, got 3" in err


def test_missing_train_file(tmp_path, write_spec, run_cli):
    err = validate_fails(run_cli, data_spec(write_spec, train="nope.csv"))
    assert "nope.csv" in err and "not found" in err


def test_valid_file_with_one_class(tmp_path, tiny_csv, write_spec, run_cli):
    write_csv(tmp_path / "valid.csv", [r for r in tiny_rows(40) if r["label"] == "weak_negative"])
    err = validate_fails(run_cli, data_spec(write_spec, valid="valid.csv"))
    assert "valid.csv" in err and "only one class" in err and "'weak_negative'" in err


def test_some_test_labels_missing(tmp_path, tiny_csv, write_spec, run_cli):
    (tmp_path / "test.csv").write_text("text,label\n" + "".join(
        f"test {i},{i % 4 if i % 2 else ''}\n" for i in range(10)))
    err = validate_fails(run_cli, data_spec(write_spec, test="test.csv", extra=f"labels = {json.dumps(TINY_LABELS)}"))
    assert "test.csv" in err and "5 of 10 rows" in err


def test_jsonl_that_is_not_json(tmp_path, write_spec, run_cli):
    (tmp_path / "tiny.jsonl").write_text('{"text": "fine", "label": "a"}\nnot json at all\n')
    err = validate_fails(run_cli, data_spec(write_spec, "jsonl", "tiny.jsonl"))
    assert "tiny.jsonl" in err and "cannot be read as jsonl" in err


def test_synthetic_loader_refuses_a_train_path(write_spec, run_cli):
    err = validate_fails(run_cli, data_spec(write_spec, "synthetic", "tiny.csv"))
    assert "spec.toml: data.train:" in err


def test_synthetic_data_has_the_notebook_imbalance(write_spec, registry):
    spec = write_spec('name = "t"\n[data]\nsource = "synthetic"\nvalid = 0.2\n[data.options]\nsize = 400\n' + MEMBER)
    data = load(spec, registry)
    counts = Counter(data.splits["train"].labels.tolist())
    assert data.num_labels == 4
    assert min(counts, key=counts.get) == data.label_names.index("weak_negative")


def test_empty_label_cell_is_a_missing_label_not_a_new_class(tmp_path, write_spec, run_cli):
    rows = tiny_rows(40)
    rows[9]["label"] = ""
    write_csv(tmp_path / "tiny.csv", rows)
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "1 of 40 rows" in err and "row 10" in err


def test_test_file_with_some_empty_string_labels(tmp_path, tiny_csv, write_spec, run_cli):
    write_csv(tmp_path / "test.csv", [{"text": r["text"], "label": r["label"] if i % 2 else ""}
                                      for i, r in enumerate(tiny_rows(10))])
    err = validate_fails(run_cli, data_spec(write_spec, test="test.csv"))
    assert "test.csv" in err and "5 of 10 rows" in err and "row 1)" in err
