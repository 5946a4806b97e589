"""The Python API a notebook uses: `runner.apply` of a dict or a `runner.Spec`, with `set=` and `store=`."""

from __future__ import annotations

import pytest

import runner

SPEC = {
    "name": "nb",
    "seed": 3,
    "data": {"source": "synthetic", "valid": 0.2, "test": 0.2, "max_length": 32,
             "options": {"size": 120, "language": "en"}},
    "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3},
    "members": [{"name": "tiny", "backbone": "scratch",
                 "options": {"architecture": "bert", "hidden_size": 32, "layers": 2, "heads": 2}}],
}


def test_a_dict_spec_trains_and_returns_a_run(tmp_path):
    run = runner.apply(SPEC, set={"train.epochs": 2}, store=tmp_path / "r.duckdb", say=lambda _: None)
    assert isinstance(run, runner.Run) and run.status == "finished"
    epochs = run.epochs()
    assert epochs["epoch"].tolist() == [1, 2]  # set= reached the spec
    again = runner.apply(runner.Spec.model_validate(SPEC), set={"train.epochs": 2}, store=tmp_path / "r.duckdb",
                         say=lambda _: None)
    assert again.status == "up-to-date" and again.run_id == run.run_id  # the same spec, as a model


def test_a_dict_spec_reports_key_paths_without_a_file(tmp_path):
    bad = {**SPEC, "train": {**SPEC["train"], "epochs": 0, "batch_sise": 4}}
    with pytest.raises(runner.SpecError) as e:
        runner.apply(bad, store=tmp_path / "r.duckdb", say=lambda _: None)
    text = str(e.value)
    assert text.startswith("2 problems in the spec:")
    assert "\n  train.epochs: " in text and "\n  train.batch_sise: " in text and "<spec>" not in text
    with pytest.raises(runner.SpecError, match="train.epochs"):
        runner.apply(SPEC, set={"train.epochs": -1}, store=tmp_path / "r.duckdb", say=lambda _: None)
    assert not (tmp_path / "r.duckdb").exists()
