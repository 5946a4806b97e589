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

from runner.data.prepare import prepare, stratified_split
from runner.errors import DataError
from runner.plugins.contexts import RawDataset
from runner.plugins.registry import load_registry
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
    from runner.data.prepare import load_raw

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


# ---------------------------------------------------------------------------- label rules (runner.data.labels)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def labelled(labels: list, n: int = 40) -> list[dict]:
    """`n` rows cycling through `labels` (any JSON value), each text distinct."""
    return [{"text": f"review {i}", "label": labels[i % len(labels)]} for i in range(n)]


def ids_by_text(data) -> dict[str, int]:
    return {t: int(y) for s in ("train", "valid") for t, y in zip(data.splits[s].texts, data.splits[s].labels)}


def test_integers_exactly_0_to_n_minus_1_are_class_ids(tmp_path, write_spec, registry):
    write_csv(tmp_path / "tiny.csv", labelled([2, 0, 1, 3]))
    data = load(data_spec(write_spec), registry)
    assert data.label_names == ["0", "1", "2", "3"]
    assert ids_by_text(data) == {f"review {i}": [2, 0, 1, 3][i % 4] for i in range(40)}


def test_years_are_class_names_sorted_numerically(tmp_path, write_spec, registry):
    write_csv(tmp_path / "tiny.csv", labelled([2011, 1999, 2005, 900]))
    data = load(data_spec(write_spec), registry)
    assert data.label_names == ["900", "1999", "2005", "2011"]
    ids = ids_by_text(data)
    assert data.label_names[ids["review 0"]] == "2011" and data.label_names[ids["review 3"]] == "900"


@pytest.mark.parametrize("values, names", [
    ([1, 2, 3], ["1", "2", "3"]),          # 1-based: three classes, not four with an empty class 0
    ([-1, 0, 1], ["-1", "0", "1"]),         # negative values are names, not an error
    ([0, 2, 5], ["0", "2", "5"]),           # a gap: names, so no class is left without examples
])
def test_integers_that_are_not_0_to_n_minus_1_are_names(tmp_path, write_spec, registry, values, names):
    write_csv(tmp_path / "tiny.csv", labelled(values, 30))
    assert load(data_spec(write_spec), registry).label_names == names


@pytest.mark.parametrize("source, huge", [("csv", 10**12), ("jsonl", 2**63 - 1), ("parquet", 2**63 - 1),
                                          ("parquet", 2**64 - 1)])
def test_a_huge_integer_label_allocates_nothing_in_proportion(tmp_path, write_spec, registry, source, huge):
    import tracemalloc

    rows = labelled([0, huge])
    if source == "csv":
        write_csv(tmp_path / "tiny.csv", rows)
    elif source == "jsonl":
        write_jsonl(tmp_path / "tiny.jsonl", rows)
    else:
        label_type = pa.uint64() if huge >= 2**63 else pa.int64()
        pq.write_table(pa.table({"text": [r["text"] for r in rows], "label": pa.array([r["label"] for r in rows],
                                                                                       label_type)}),
                       tmp_path / "tiny.parquet")
    tracemalloc.start()
    try:
        data = load(data_spec(write_spec, source, f"tiny.{source}"), registry)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data.label_names == ["0", str(huge)]
    assert peak < 50 * 2**20


def test_declared_names_are_matched_before_indices(tmp_path, write_spec, registry):
    write_csv(tmp_path / "tiny.csv", labelled([0, 1]))
    data = load(data_spec(write_spec, extra='labels = ["1", "0"]'), registry)  # 1 is the name "1", not index 1
    ids = ids_by_text(data)
    assert data.label_names[ids["review 0"]] == "0" and data.label_names[ids["review 1"]] == "1"
    assert ids["review 1"] == 0


def test_declared_names_match_years_by_name(tmp_path, write_spec, registry):
    write_csv(tmp_path / "tiny.csv", labelled([1999, 2005]))
    data = load(data_spec(write_spec, extra='labels = ["2005", "1999"]'), registry)
    assert data.label_names == ["2005", "1999"]
    assert ids_by_text(data)["review 0"] == 1


def test_an_integer_that_is_neither_a_declared_name_nor_an_index(tmp_path, write_spec, run_cli):
    rows = labelled([0, 1])
    rows[4]["label"] = 7
    write_csv(tmp_path / "tiny.csv", rows)
    err = validate_fails(run_cli, data_spec(write_spec, extra='labels = ["neg", "pos"]'))
    assert "tiny.csv" in err and "row 5" in err and "'label' = 7" in err and "0..1" in err


def test_integral_floats_act_as_integers(tmp_path, write_spec, registry):
    write_jsonl(tmp_path / "tiny.jsonl", labelled([0.0, 1.0, 2.0]))
    assert load(data_spec(write_spec, "jsonl", "tiny.jsonl"), registry).label_names == ["0", "1", "2"]
    write_csv(tmp_path / "tiny.csv", labelled(["1.0", "2.0", "3"]))  # a pandas export of integers with NaN
    assert load(data_spec(write_spec), registry).label_names == ["1", "2", "3"]


@pytest.mark.parametrize("source", ["csv", "jsonl"])
def test_a_fractional_number_is_an_error_unless_declared(tmp_path, write_spec, registry, run_cli, source):
    rows = labelled([1, 1.5, 2])
    (write_csv if source == "csv" else write_jsonl)(tmp_path / f"tiny.{source}", rows)
    err = validate_fails(run_cli, data_spec(write_spec, source, f"tiny.{source}"))
    assert f"tiny.{source}" in err and "row 2" in err and "'label'" in err and "1.5" in err and "not an integer" in err
    data = load(data_spec(write_spec, source, f"tiny.{source}", extra='labels = ["1", "1.5", "2"]'), registry)
    assert data.label_names == ["1", "1.5", "2"] and ids_by_text(data)["review 1"] == 1


def test_nan_label_is_missing(tmp_path, write_spec, run_cli):
    rows = labelled([0, 1])
    (tmp_path / "tiny.jsonl").write_text("".join(
        json.dumps(r) + "\n" if i != 3 else '{"text": "review 3", "label": NaN}\n' for i, r in enumerate(rows)))
    err = validate_fails(run_cli, data_spec(write_spec, "jsonl", "tiny.jsonl"))
    assert "tiny.jsonl" in err and "1 of 40 rows" in err and "row 4" in err


def test_booleans_are_the_names_true_and_false(tmp_path, write_spec, registry):
    write_jsonl(tmp_path / "tiny.jsonl", labelled([True, False]))
    data = load(data_spec(write_spec, "jsonl", "tiny.jsonl"), registry)
    assert data.label_names == ["false", "true"] and ids_by_text(data)["review 0"] == 1
    write_csv(tmp_path / "tiny.csv", labelled(["True", "False"]))  # CSV cells are text, kept as written
    assert load(data_spec(write_spec), registry).label_names == ["False", "True"]


def test_an_integer_and_its_text_are_one_class(tmp_path, write_spec, registry):
    write_jsonl(tmp_path / "tiny.jsonl", labelled([1, "1", "neg", 10, 2]))
    data = load(data_spec(write_spec, "jsonl", "tiny.jsonl"), registry)
    assert data.label_names == ["1", "2", "10", "neg"]
    ids = ids_by_text(data)
    assert ids["review 0"] == ids["review 1"] == 0


def test_a_label_seen_only_in_valid_is_an_error_unless_declared(tmp_path, tiny_csv, write_spec, registry, run_cli):
    write_csv(tmp_path / "valid.csv", tiny_rows(8) + [{"text": "extra", "label": "neutral"}])
    err = validate_fails(run_cli, data_spec(write_spec, valid="valid.csv"))
    assert "valid.csv" in err and "row 9" in err and "'neutral'" in err and "does not occur in the train split" in err
    declared = TINY_LABELS + ["neutral"]  # declared: a class with no training example is allowed
    data = load(data_spec(write_spec, valid="valid.csv", extra=f"labels = {json.dumps(declared)}"), registry)
    assert data.label_names == declared and data.class_counts("train")[-1] == 0


def test_a_class_missing_from_valid_is_fine(tmp_path, write_spec, registry):
    write_csv(tmp_path / "tiny.csv", labelled(["a", "b"], 20) + [{"text": "the only c", "label": "c"}])
    data = load(data_spec(write_spec, valid=0.2), registry)
    assert data.label_names == ["a", "b", "c"]
    assert "the only c" in data.splits["train"].texts and data.class_counts("valid") == [2, 2, 0]


@pytest.mark.parametrize("label, what", [(["neg"], "a list"), ({"name": "neg"}, "an object")])
def test_list_or_object_labels_in_jsonl(tmp_path, write_spec, run_cli, label, what):
    rows = tiny_rows(40)
    rows[2]["label"] = label
    write_jsonl(tmp_path / "tiny.jsonl", rows)
    err = validate_fails(run_cli, data_spec(write_spec, "jsonl", "tiny.jsonl"))
    assert "tiny.jsonl" in err and "row 3" in err and "column 'label'" in err and what in err


@pytest.mark.parametrize("column, values", [
    ("label", pa.array([b"neg", b"pos"] * 20, pa.binary())),
    ("label", pa.array([[0], [1]] * 20)),
    ("label", pa.array([{"a": 0}, {"a": 1}] * 20)),
    ("text", pa.array([b"some bytes"] * 40, pa.binary())),
])
def test_binary_list_or_struct_cells_in_parquet(tmp_path, write_spec, run_cli, column, values):
    table = {"text": [f"review {i}" for i in range(40)], "label": ["neg", "pos"] * 20}
    table[column] = values
    pq.write_table(pa.table(table), tmp_path / "tiny.parquet")
    err = validate_fails(run_cli, data_spec(write_spec, "parquet", "tiny.parquet"))
    assert "tiny.parquet" in err and "row 1" in err and f"column {column!r}" in err


def test_text_with_a_lone_surrogate_names_the_row():
    rows = tiny_rows(40)
    rows[5]["text"] = "broken \udcff text"
    with pytest.raises(DataError, match=r"row 6 .*'text'.*not valid Unicode"):
        prepare(DataSpec(source="csv", train="x", valid=0.2), RawDataset(splits={"train": rows}), 0)


def test_a_loader_returning_bad_rows_or_label_names_is_a_data_error():
    spec = DataSpec(source="csv", train="x", valid=0.2)
    with pytest.raises(DataError, match="row 2 of the train split"):
        prepare(spec, RawDataset(splits={"train": [{"text": "a", "label": "x"}, "not a row"]}), 0)
    with pytest.raises(DataError, match="label names"):
        prepare(spec, RawDataset(splits={"train": tiny_rows(40)}, label_names=["a", "a"]), 0)


# ---------------------------------------------------------------------------- encodings, headers, empty files


@pytest.mark.parametrize("source", ["csv", "jsonl"])
def test_a_utf8_byte_order_mark_is_ignored(tmp_path, write_spec, registry, source):
    rows = tiny_rows(40)
    body = ("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows) if source == "csv"
            else "".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / f"tiny.{source}").write_bytes(b"\xef\xbb\xbf" + body.encode())
    data = load(data_spec(write_spec, source, f"tiny.{source}"), registry)
    assert data.label_names == sorted(TINY_LABELS) and len(data.splits["train"]) == 32


KOREAN = [{"text": f"리뷰 {i}: 영화가 {'좋았다' if i % 2 else '별로였다'}",
           "label": "긍정" if i % 2 else "부정"} for i in range(40)]


@pytest.mark.parametrize("source", ["csv", "jsonl"])
def test_cp949_without_the_encoding_option_names_row_and_column(tmp_path, write_spec, run_cli, source):
    body = ("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in KOREAN) if source == "csv"
            else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in KOREAN))
    (tmp_path / f"tiny.{source}").write_bytes(body.encode("cp949"))
    err = validate_fails(run_cli, data_spec(write_spec, source, f"tiny.{source}"))
    assert f"tiny.{source}" in err and "row 1" in err and "'text'" in err and "not valid UTF-8" in err
    assert 'encoding = "cp949"' in err


@pytest.mark.parametrize("source", ["csv", "jsonl"])
def test_the_encoding_option_reads_cp949(tmp_path, write_spec, registry, source):
    body = ("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in KOREAN) if source == "csv"
            else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in KOREAN))
    (tmp_path / f"tiny.{source}").write_bytes(body.encode("cp949"))
    data = load(data_spec(write_spec, source, f"tiny.{source}", extra='[data.options]\nencoding = "cp949"'), registry)
    assert data.label_names == ["긍정", "부정"]
    assert "리뷰 0: 영화가 별로였다" in data.splits["train"].texts + data.splits["valid"].texts


def test_a_non_utf8_label_cell_names_the_label_column(tmp_path, write_spec, run_cli):
    body = "text,label\n" + "".join(f"review {i},{'긍정' if i == 6 else TINY_LABELS[i % 4]}\n" for i in range(40))
    (tmp_path / "tiny.csv").write_bytes(body.encode("cp949"))
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "row 7 (line 8)" in err and "column 'label'" in err


def test_utf16_needs_the_encoding_option(tmp_path, write_spec, registry, run_cli):
    body = "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in tiny_rows(40))
    (tmp_path / "tiny.csv").write_bytes(body.encode("utf-16"))
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "UTF-16" in err and 'encoding = "utf-16"' in err
    data = load(data_spec(write_spec, extra='[data.options]\nencoding = "utf-16"'), registry)
    assert data.label_names == sorted(TINY_LABELS)


def test_an_unknown_encoding_is_a_spec_error(tiny_csv, write_spec, run_cli):
    err = validate_fails(run_cli, data_spec(write_spec, extra='[data.options]\nencoding = "base64"'))
    assert "spec.toml" in err and "data.options.encoding" in err


def test_an_unset_encoding_leaves_the_options_dump_unchanged():
    from runner.builtins.datasets import CsvOptions, JsonlOptions

    assert CsvOptions().model_dump(mode="json") == {"delimiter": ","}  # so older specs keep their hash
    assert JsonlOptions().model_dump(mode="json") == {}
    assert CsvOptions(encoding="cp949").model_dump(mode="json")["encoding"] == "cp949"


def test_a_quote_or_newline_is_not_a_delimiter(tiny_csv, write_spec, run_cli):
    err = validate_fails(run_cli, data_spec(write_spec, extra="[data.options]\ndelimiter = '\"'"))
    assert "spec.toml" in err and "data.options.delimiter" in err


def test_duplicate_label_header_names_the_column(tmp_path, write_spec, run_cli):
    (tmp_path / "tiny.csv").write_text("text,label,label\n" + "".join(
        f"review {i},{TINY_LABELS[i % 4]},x\n" for i in range(40)))
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "2 columns named 'label'" in err and "label_column" in err


def test_a_duplicate_column_that_is_not_used_is_ignored(tmp_path, write_spec, registry):
    (tmp_path / "tiny.csv").write_text("note,text,label,note\n" + "".join(
        f"a,review {i},{TINY_LABELS[i % 4]},b\n" for i in range(40)))
    assert load(data_spec(write_spec), registry).label_names == sorted(TINY_LABELS)


@pytest.mark.parametrize("source, body", [("csv", "\n\n\n"), ("jsonl", "\n \n\n"), ("jsonl", ""),
                                          ("csv", "\ufeff")])
def test_blank_files_are_empty(tmp_path, write_spec, run_cli, source, body):
    (tmp_path / f"tiny.{source}").write_text(body, encoding="utf-8")
    err = validate_fails(run_cli, data_spec(write_spec, source, f"tiny.{source}"))
    assert f"tiny.{source}" in err and "empty" in err


def test_jsonl_with_cr_line_endings_and_mixed_label_types(tmp_path, write_spec, registry):
    rows = labelled([0, "neg", 1])
    (tmp_path / "tiny.jsonl").write_text("\r".join(json.dumps(r) for r in rows) + "\r")
    data = load(data_spec(write_spec, "jsonl", "tiny.jsonl"), registry)
    assert data.label_names == ["0", "1", "neg"] and len(data.splits["train"]) + len(data.splits["valid"]) == 40


# ---------------------------------------------------------------------------- fraction splits that round to empty


def test_a_valid_fraction_that_rounds_to_nothing_names_data_valid():
    message = r"data\.valid = 0\.01 of 20 rows takes no examples.*10 examples each.*above 0\.05"
    with pytest.raises(DataError, match=message):
        fraction_split(labelled(["a", "b"], 20), valid=0.01)
    assert len(fraction_split(labelled(["a", "b"], 20), valid=0.06).splits["valid"]) == 2  # the advice works


def test_a_test_fraction_that_rounds_to_nothing_names_data_test():
    with pytest.raises(DataError, match=r"data\.test = 0\.02 .*no examples"):
        fraction_split(labelled(["a", "b"], 20), valid=0.2, test=0.02)


def test_a_fraction_that_takes_one_class_only_is_an_error():
    rows = labelled(["a"], 30) + labelled(["b"], 3)
    with pytest.raises(DataError, match=r"data\.valid = 0\.1 .*only 3 examples, all of class 'a'"):
        fraction_split(rows, valid=0.1)


@pytest.mark.parametrize("n", [2, 3])
def test_a_tiny_dataset_is_a_clear_error(n, tmp_path, write_spec, run_cli):
    write_csv(tmp_path / "tiny.csv", labelled(["neg", "pos", "meh"][:n], n))
    err = validate_fails(run_cli, data_spec(write_spec, valid=0.25))
    assert "tiny.csv" in err and "too little data" in err and "data.valid" in err


@pytest.mark.parametrize("newlines", [False, True])
def test_a_csv_cell_of_10_mb_is_read_whole(tmp_path, write_spec, registry, run_cli, newlines):
    """pyarrow reads a csv in 1 MiB blocks and refused a row longer than one ("straddles two block
    boundaries"); a cell of any size is read, quoted line breaks included, for training and for predict."""
    big = ("a long review, " + ("with a line break\n" if newlines else "") + "on and on. ") * 400_000
    assert len(big.encode()) > 10_000_000
    rows = labelled(["neg", "pos"])
    rows[5]["text"] = big
    write_csv(tmp_path / "tiny.csv", rows)
    data = load(data_spec(write_spec), registry)
    assert big in data.splits["train"].texts + data.splits["valid"].texts
    assert len(data.splits["train"]) + len(data.splits["valid"]) == 40
    from runner.data.inputs import read_input

    got = read_input(tmp_path / "tiny.csv", ["neg", "pos"], registry)
    assert got.texts[5] == big and got.labels.tolist() == [i % 2 for i in range(40)]


def test_errors_about_a_data_file_quote_a_cell_never_a_whole_line(tmp_path, write_spec, run_cli):
    """A spec may point at any file (a link to /etc/passwd): a message names the row and line, and quotes
    a cell or a column name cut short, never the line (pyarrow's own message quotes the row)."""
    secret = "root:x:0:0:the-whole-secret-line:/root:/bin/bash"
    lines = [f"review {i},{TINY_LABELS[i % 4]}" for i in range(40)]
    lines[20] = secret.replace(":", ",")
    (tmp_path / "tiny.csv").write_text("text,label\n" + "\n".join(lines) + "\n")
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "row 21 (line 22)" in err and "Expected 2 columns, got 7" in err and "the-whole-secret" not in err, err
    (tmp_path / "tiny.csv").write_text(secret + "\n" + "\n".join(f"line {i}" for i in range(20)) + "\n")
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "no column 'text'" in err and "'root:x:0:0:" in err and "/bin/bash" not in err, err


def test_a_fifo_is_refused_as_a_data_file_and_as_predict_input(tmp_path, write_spec, run_cli, registry):
    """A named pipe is no regular file: exit 2 naming it, never a wait for a writer or a read of half."""
    import os

    from runner.data.inputs import read_input
    from runner.errors import InputError

    os.mkfifo(tmp_path / "tiny.csv")
    err = validate_fails(run_cli, data_spec(write_spec))
    assert "tiny.csv" in err and "named pipe" in err and "[data].train" in err, err
    with pytest.raises(InputError, match="INPUT .*tiny.csv: is a named pipe"):
        read_input(tmp_path / "tiny.csv", ["neg", "pos"], registry)
