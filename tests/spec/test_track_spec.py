"""`[track]`: checked like every table (unknown keys and values named by their key path), and not part of
the spec hash, so adding a tracker to the spec of a finished run logs that run instead of training anew."""

from __future__ import annotations

import pytest
from test_spec import spec_text, validate_fails

from runner.plugins.registry import load_registry
from runner.spec import load_and_resolve

TRACK = '[track]\nto = ["mlflow", "wandb"]\n\n[track.mlflow]\nexperiment = "e"\n\n[track.wandb]\nmode = "offline"\n'


@pytest.fixture(scope="module")
def registry():
    return load_registry(None)


def test_track_leaves_the_spec_hash_alone_and_is_kept_with_the_run(write_spec, registry):
    plain = load_and_resolve(write_spec(spec_text(), "plain.toml"), registry)
    tracked = load_and_resolve(write_spec(spec_text(sections=TRACK), "tracked.toml"), registry)
    assert tracked.spec_hash() == plain.spec_hash()
    assert "track" not in plain.to_dict()  # a spec without it stores (and prints) what it did before
    assert tracked.to_dict()["track"]["to"] == ["mlflow", "wandb"]
    assert tracked.to_dict()["track"]["wandb"]["mode"] == "offline"


@pytest.mark.parametrize("section, where", [
    ('[track.mlflow]\ntracking_url = "http://x"\n', "track.mlflow.tracking_url: unknown key"),
    ('[track]\nto = ["neptune"]\n', "track.to[0]:"),
    ('[track]\nto = ["wandb", "wandb"]\n', "track.to: name each tracker once"),
    ('[track.wandb]\nmode = "disabled"\n', "track.wandb.mode:"),
    ('[track]\ncolour = 1\n', "track.colour: unknown key"),
])
def test_a_bad_track_key_is_named(write_spec, run_cli, section: str, where: str):
    err = validate_fails(run_cli, write_spec(spec_text(sections=section)))
    assert f"spec.toml: {where}" in " ".join(err.split())


def test_runner_schema_has_track():
    from runner.spec.schema import spec_schema

    schema = spec_schema(load_registry(None))
    track = schema["$defs"][schema["properties"]["track"]["$ref"].rsplit("/", 1)[1]]
    assert set(track["properties"]) == {"to", "mlflow", "wandb"}
