"""`runner export` and `runner.load(DIR)`: a run's ensemble as a folder that needs no store, spec or runs/.

The central check loads an export in a fresh Python process, from a copy of the folder, in a working
directory with no store, while the run's runs/ folder is renamed away: it must give the probabilities
the store holds for the test split. A plugin backbone (the example GRU, a file plugin) must be named
when it cannot be found, and load with the copy the export keeps.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from predict_helpers import cli, digest, probs_of, read_output, split_csv, store_copy, stored_probs, trained

from runner.errors import InputError
from runner.posthoc.calibration import apply as calibrate
from runner.store import Store

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    d = tmp_path_factory.mktemp("exports") / "ensemble"
    code, out, err = cli("export", run.run_id, d, "--store", run.store)
    assert code == 0, err + out
    return d


def test_the_folder_holds_the_manifest_and_each_members_files_and_no_pickle(run, exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    st = Store(run.store)
    record = st.run(run.run_id)
    assert manifest["format"] == "runner-export-1" and manifest["labels"] == run.labels
    assert manifest["strategy"] == record.selected_strategy
    assert manifest["run"]["run_id"] == run.run_id and manifest["run"]["spec_hash"] == record.spec_hash
    assert manifest["run"]["dataset_id"] == run.dataset_id and manifest["max_length"] == 40
    assert manifest["runner_version"]
    weights = dict(st.query("SELECT member, weight FROM ensemble_weights WHERE run_id = ? AND ensemble = 'ensemble' "
                            "AND strategy = ?", [run.run_id, record.selected_strategy])[1])
    assert manifest["ensemble"]["weights"] == pytest.approx(weights)
    for m in manifest["members"]:
        assert m["checkpoint"] == record.member(m["name"]).selected_checkpoint
        assert m["backbone"] == "scratch" and m["origin"] == "builtin" and m["options"]["hidden_size"] in (16, 32)
        files = {p.name for p in (exported / m["path"]).iterdir()}
        assert {"model.safetensors", "config.json", "runner.json", "tokenizer.json"} <= files
    assert not [p for p in exported.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert not list(exported.rglob("selection.json")) and not list(exported.parent.glob(".*tmp*"))


def test_load_in_a_fresh_process_without_store_or_runs(run, exported, tmp_path):
    """The export is copied elsewhere; runs/ is renamed away while a new interpreter loads it."""
    test_csv = split_csv(run, "test", tmp_path / "test.csv")
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(exported, copy)
    work = tmp_path / "work"
    work.mkdir()
    script = ("import csv, json, sys, runner\n"
              "p = runner.load(sys.argv[1])\n"
              "texts = [r['text'] for r in csv.DictReader(open(sys.argv[2], newline=''))]\n"
              "print(json.dumps({'probs': p.predict_proba(texts).tolist(), 'labels': p.predict(texts[:5]),\n"
              "                  'weights': p.weights, 'names': p.labels}))\n")
    runs = run.folder / "runs"
    hidden = run.folder / "runs.hidden"
    runs.rename(hidden)
    try:
        proc = subprocess.run([sys.executable, "-c", script, str(copy), str(test_csv)], cwd=work,
                              capture_output=True, text=True, timeout=300)
    finally:
        hidden.rename(runs)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not list(work.iterdir())  # nothing written where it ran
    probs = np.array(got["probs"])
    strategy = Store(run.store).run(run.run_id).selected_strategy
    expected = stored_probs(run.store, run.run_id, "ensemble", "ensemble", strategy, "test")
    assert np.abs(probs - expected).max() <= TOLERANCE
    assert got["labels"] == [run.labels[i] for i in expected[:5].argmax(axis=1)]
    assert got["names"] == run.labels and sum(got["weights"].values()) == pytest.approx(1.0)


def test_predict_takes_an_exported_folder(run, exported, tmp_path):
    test_csv = split_csv(run, "test", tmp_path / "test.csv")
    out = tmp_path / "p.csv"
    code, stdout, err = cli("predict", exported, test_csv, "--members", "-o", out)
    assert code == 0, err
    _, cols = read_output(out)
    strategy = Store(run.store).run(run.run_id).selected_strategy
    expected = stored_probs(run.store, run.run_id, "ensemble", "ensemble", strategy, "test")
    assert np.abs(probs_of(cols, run.labels) - expected).max() <= TOLERANCE
    for m in ("a", "b", "c"):
        checkpoint = Store(run.store).run(run.run_id).member(m).selected_checkpoint
        member = stored_probs(run.store, run.run_id, "member", m, checkpoint, "test")
        assert np.abs(probs_of(cols, run.labels, f"{m}.") - member).max() <= TOLERANCE
    assert "Against the labels" in stdout and not (tmp_path / "results.duckdb").exists()
    code, _, err = cli("predict", exported, test_csv, "--strategy", "swa")
    assert code == 2 and "holds strategy" in err


def test_swa_export_gives_the_swa_ensemble(run, tmp_path):
    d = tmp_path / "swa"
    assert cli("export", run.run_id, d, "--strategy", "swa", "--store", run.store)[0] == 0
    from runner import load

    test_csv = split_csv(run, "test", tmp_path / "test.csv")
    with test_csv.open(newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    p = load(d)
    for m in ("a", "b", "c"):
        expected = stored_probs(run.store, run.run_id, "member", m, "swa", "test")
        assert np.abs(p.run(texts).raw_members[m] - expected).max() <= TOLERANCE
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["strategy"] == "swa" and {m["checkpoint"] for m in manifest["members"]} == {"swa"}


def test_export_refuses_a_folder_that_is_not_empty_and_writes_nothing(run, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    before = digest(run.store)
    code, _, err = cli("export", run.run_id, taken, "--store", run.store)
    assert code == 2 and "not empty" in err and str(taken) in err
    assert [p.name for p in taken.iterdir()] == ["notes.txt"] and digest(run.store) == before
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert cli("export", run.run_id, a_file, "--store", run.store)[0] == 2
    code, _, err = cli("export", run.run_id, tmp_path / "x", "--strategy", "last", "--store", run.store)
    assert code == 2 and "not kept on disk" in err and not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]  # no temporary folder left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("export", run.run_id, empty, "--store", run.store)[0] == 0  # an empty folder is fine
    assert (empty / "manifest.json").is_file()


def test_load_refuses_a_folder_that_is_not_an_export(tmp_path):
    from runner import load

    with pytest.raises(InputError, match="manifest.json"):
        load(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a runner export manifest"):
        load(tmp_path)


def test_calibrations_travel_in_the_manifest(run, tmp_path):
    path = store_copy(run, "calibrated-export.duckdb")
    strategy = Store(path).run(run.run_id).selected_strategy
    row = SimpleNamespace(run_id=run.run_id, kind="ensemble", member="ensemble", checkpoint=strategy,
                          method="temperature+bias", temperature=2.0, bias=[0.5, -0.5, 0.25, -0.25],
                          valid_log_loss_before=1.0, valid_log_loss_after=0.9, metric_rows=lambda: [])
    Store(path).log_calibrations([row])
    d = tmp_path / "cal"
    assert cli("export", run.run_id, d, "--store", path)[0] == 0
    from runner import load

    p = load(d)
    texts = ["a fine film", "dull and slow", "superb acting, a stunning ending"]
    raw = p.predict_proba(texts)
    assert np.abs(p.predict_proba(texts, calibrated=True) - calibrate(raw, 2.0, np.array(row.bias))).max() < 1e-6
    plain = tmp_path / "plain"
    assert cli("export", run.run_id, plain, "--store", run.store)[0] == 0
    with pytest.raises(InputError, match="runner calibrate"):
        load(plain).predict_proba(texts, calibrated=True)


# -- a plugin backbone ------------------------------------------------------------------------------

GRU_SPEC = """
name = "gru-run"
seed = 4

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 40

[data.options]
size = 200

[train]
epochs = 1
batch_size = 32

[[members]]
name = "gru"
backbone = "gru"
options = { embedding_dim = 16, hidden_size = 16, vocab_size = 500 }
"""


@pytest.fixture(scope="module")
def gru_export(tmp_path_factory):
    d = tmp_path_factory.mktemp("gru")
    (d / "plugins").mkdir()
    shutil.copy(REPO / "plugins" / "gru_encoder.py", d / "plugins")
    (d / "spec.toml").write_text(GRU_SPEC)
    code, out, err = cli("apply", d / "spec.toml", "--store", d / "results.duckdb")
    assert code == 0, err + out
    run_id = Store(d / "results.duckdb").run("gru-run").run_id
    target = d / "export"
    code, out, err = cli("export", run_id, target, "--store", d / "results.duckdb", "--plugins", d / "plugins")
    assert code == 0, err + out
    return SimpleNamespace(folder=d, export=target, run_id=run_id)


def test_a_plugin_backbone_is_named_when_it_cannot_be_found(gru_export, tmp_path):
    from runner import load

    exp = gru_export.export
    manifest = json.loads((exp / "manifest.json").read_text())
    (member,) = manifest["members"]
    assert member["backbone"] == "gru" and member["plugin_file"] == "plugins/gru_encoder.py"
    assert (exp / "plugins" / "gru_encoder.py").is_file() and member["weight"] == 1.0
    with pytest.raises(InputError) as e:
        load(exp)
    assert "'gru'" in str(e.value) and "gru_encoder.py" in str(e.value) and str(exp / "plugins") in str(e.value)
    texts = ["a fine film", "dull and slow"]
    p = load(exp, plugins_dir=exp / "plugins")
    probs = p.predict_proba(texts)
    assert probs.shape == (2, 4) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    src = tmp_path / "in.csv"
    src.write_text("text\n" + "\n".join(texts) + "\n")
    code, _, err = cli("predict", exp, src)
    assert code == 2 and "'gru'" in err and "--plugins" in err, err
    code, stdout, err = cli("predict", exp, src, "--plugins", exp / "plugins")
    assert code == 0, err
    assert stdout.splitlines()[0].startswith("pred_label,pred_id,p_strong_negative")


def test_a_one_member_run_predicts_with_its_member_alone(gru_export, tmp_path):
    """No ensemble: the member's probabilities are the output, and it matches the stored test split."""
    d = gru_export.folder
    st = Store(d / "results.duckdb")
    record = st.run(gru_export.run_id)
    texts_labels = st.query("SELECT text, label FROM examples WHERE dataset_id = ? AND split = 'test' ORDER BY idx",
                            [record.dataset_id])[1]
    src = tmp_path / "test.jsonl"
    src.write_text("".join(json.dumps({"text": t, "label": record.label_names[y]}) + "\n" for t, y in texts_labels))
    out = tmp_path / "p.csv"
    code, _, err = cli("predict", gru_export.run_id, src, "--store", d / "results.duckdb", "--plugins", d / "plugins",
                       "-o", out)
    assert code == 0, err
    _, cols = read_output(out)
    expected = stored_probs(d / "results.duckdb", gru_export.run_id, "member", "gru",
                            record.member("gru").selected_checkpoint, "test")
    assert np.abs(probs_of(cols, list(record.label_names)) - expected).max() <= TOLERANCE
    kinds = st.query("SELECT DISTINCT kind FROM predictions WHERE run_id = ? AND split LIKE 'input-%'",
                     [gru_export.run_id])[1]
    assert kinds == [("member",)]
