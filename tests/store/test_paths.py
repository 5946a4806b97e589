"""Names, paths and the one function that deletes: safe by construction, checked by search.

- Automatic member names are safe folder names and unique (even case-insensitively), whatever the
  models are called.
- `checkpoints.remove` refuses any path outside the member folder it is given, for paths nobody
  listed (hypothesis builds them from `..`, symlinks, absolute paths and odd names).
- Plugins load only from the places docs/plugins.md names.
- Unexpected exceptions end as `internal error` with a log, never a traceback on screen.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.spec import NAME_PATTERN, MemberSpec
from runner.spec.names import member_names, safe_name
from runner.store import checkpoints


def members(*models, names=None):
    names = names or [None] * len(models)
    return [MemberSpec(name=n, backbone="hf", model=m) for m, n in zip(models, names)]


def test_automatic_names_from_models_that_share_a_last_component_are_unique():
    got = member_names(members("m1/bert-base", "m2/bert-base", "m3/bert-base-1"))
    assert len(set(got)) == 3 and got[2] == "bert-base-1"
    assert got == ["bert-base-2", "bert-base-3", "bert-base-1"]


@pytest.mark.parametrize("model", ["mdl/sub/..", "../", "..", ".", "/", "./x/./", "a/b/../..", "~"])
def test_a_model_path_ending_in_dots_never_names_a_folder_dot_dot(model):
    (name,) = member_names(members(model))
    assert name not in (".", "..") and re.match(NAME_PATTERN, name), name


def test_names_differing_only_in_case_are_made_unique():
    got = member_names(members("a/Bert", "b/bert", "c/BERT"))
    assert len({n.casefold() for n in got}) == 3


def test_an_automatic_name_never_takes_an_explicit_one():
    got = member_names(members("x/gru", "y/gru-1", names=[None, "gru"]))
    assert got[1] == "gru" and got[0] != "gru" and got[0].casefold() not in {"gru", "y"}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.text(min_size=1, max_size=40)),
                          st.sampled_from(["hf", "scratch", "gru"])), min_size=1, max_size=6))
def test_automatic_names_are_always_safe_and_unique(specs):
    ms = [MemberSpec.model_construct(name=None, backbone=b, model=m) for m, b in specs]  # any text at all
    got = member_names(ms)
    assert len({n.casefold() for n in got}) == len(got)
    for n in got:
        assert re.match(NAME_PATTERN, n) and checkpoints.safe_component(n) is None, n


@given(st.text(max_size=300))
def test_safe_name_is_always_a_safe_component(text):
    n = safe_name(text)
    assert re.match(NAME_PATTERN, n) and checkpoints.safe_component(n) is None


# -- the one function that deletes ---------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """runs/ with two runs and two members each, every member folder holding a file."""
    runs = tmp_path / "runs"
    for run in ("r1", "r2"):
        for member in ("a", "b"):
            d = runs / run / member / "checkpoints" / "checkpoint-1"
            d.mkdir(parents=True)
            (d / "model.safetensors").write_bytes(b"w")
            (runs / run / member / "keep.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("precious")
    os.symlink(tmp_path, runs / "r1" / "a" / "link-out")
    return runs


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_remove_deletes_inside_the_member_folder_only(tree):
    owner = checkpoints.MemberDir(tree.resolve(), "r1", "a")
    checkpoints.remove(owner.checkpoints, owner)
    assert not owner.checkpoints.exists() and (owner.path / "keep.txt").exists()
    for outside in (tree / "r1" / "b", tree / "r2", tree, tree / "r1", tree.parent / "outside.txt",
                    owner.path / "link-out" / "outside.txt", owner.path / ".." / "b" / "keep.txt"):
        with pytest.raises(ValueError, match="refusing"):
            checkpoints.remove(outside, owner)
    assert (tree.parent / "outside.txt").read_text() == "precious"
    checkpoints.remove(owner.path, owner)  # the member folder itself may go
    assert not owner.path.exists() and (tree / "r1" / "b" / "keep.txt").exists()


@pytest.mark.parametrize("run_id, member", [("..", "a"), ("r1", ".."), ("r1", "a/../../r2"), ("", "a"),
                                            ("r1", "x" * 300), ("r1\x00", "a")])
def test_a_member_folder_with_an_unsafe_name_cannot_even_be_described(tree, run_id, member):
    with pytest.raises(ValueError):
        checkpoints.MemberDir(tree, run_id, member)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(["..", ".", "r1", "r2", "a", "b", "checkpoints", "link-out", "keep.txt",
                                       "outside.txt", "runs", "", "x"]), max_size=6),
       absolute=st.booleans())
def test_remove_never_touches_anything_outside_the_member_folder(tree, parts, absolute):
    owner = checkpoints.MemberDir(tree.resolve(), "r1", "a")
    base = tree.parent if absolute else owner.path
    target = base.joinpath(*parts) if parts else base
    outside_before = snapshot(tree.parent) - {p for p in snapshot(tree.parent) if p.startswith("runs/r1/a")}
    try:
        checkpoints.remove(target, owner)
    except (ValueError, FileNotFoundError):
        pass
    outside_after = snapshot(tree.parent) - {p for p in snapshot(tree.parent) if p.startswith("runs/r1/a")}
    assert outside_after == outside_before
    # rebuild what was removed inside, for the next example
    for d in ("checkpoints/checkpoint-1",):
        (owner.path / d).mkdir(parents=True, exist_ok=True)
    (owner.path / "keep.txt").write_text("x")
    if not (owner.path / "link-out").is_symlink():
        os.symlink(tree.parent, owner.path / "link-out")


# -- where plugins come from ---------------------------------------------------------------------

PLUGIN = """
from runner import hookimpl

@hookimpl
def register_metrics(register):
    register("{name}", lambda probs, labels: 0.0)
"""

SPEC = """
name = "where"
[data]
source = "synthetic"
[[members]]
backbone = "scratch"
"""


def plugin_dir(d: Path, name: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.py").write_text(PLUGIN.format(name=name))


def metrics_seen(run_cli, spec: Path) -> set[str]:
    code, out, err = run_cli("plugins", spec, "--format", "json")
    assert code == 0, err
    import json

    return {r["name"] for r in json.loads(out) if r["kind"] == "metric"}


def test_plugins_come_from_beside_the_spec_or_beside_a_specs_folder_only(tmp_path, run_cli):
    plugin_dir(tmp_path / "plugins", "from_shared_parent")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "s.toml").write_text(SPEC)
    assert "from_shared_parent" not in metrics_seen(run_cli, tmp_path / "x" / "s.toml")

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "s.toml").write_text(SPEC)
    assert "from_shared_parent" in metrics_seen(run_cli, tmp_path / "specs" / "s.toml")

    plugin_dir(tmp_path / "x" / "plugins", "beside")
    assert metrics_seen(run_cli, tmp_path / "x" / "s.toml") >= {"beside"}


def test_validate_and_apply_say_which_plugin_files_they_loaded(tmp_path, run_cli):
    plugin_dir(tmp_path / "plugins", "said")
    (tmp_path / "s.toml").write_text(SPEC)
    code, out, err = run_cli("validate", tmp_path / "s.toml", "--no-check-models")
    assert code == 0, err
    assert "plugins: loaded said.py from" in err


def test_runner_plugins_in_a_folder_with_plugins_says_it_did_not_load_them(tmp_path, run_cli, monkeypatch):
    plugin_dir(tmp_path / "plugins", "here")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("plugins", "--format", "json")
    assert code == 0 and '"here"' not in out
    assert "./plugins was not loaded" in err


# -- the failure contract ------------------------------------------------------------------------


def test_an_unexpected_exception_is_an_internal_error_with_a_log_and_debug_shows_it(tmp_path, run_cli):
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "boom.py").write_text(textwrap.dedent("""
        from runner import hookimpl

        @hookimpl
        def on_run_end(run_id, status, store_path):
            raise KeyError("an event hook bug")
    """))
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace('source = "synthetic"', 'source = "synthetic"\noptions = { size = 120 }')
                    + 'options = { hidden_size = 16, layers = 1, heads = 2 }\n[train]\nepochs = 1\n')
    store = tmp_path / "results.duckdb"
    code, out, err = run_cli("apply", spec, "--store", store)
    assert code == 1, err
    assert "internal error: KeyError" in err and "Traceback" not in out + err
    log = Path(re.search(r"the traceback is in (\S+)\.", err).group(1))
    assert log.is_file() and log.parent.parent == tmp_path / "runs"
    assert "Traceback" in log.read_text() and "an event hook bug" in log.read_text()

    code, out, err = run_cli("--debug", "runs", "--store", tmp_path / "nowhere.duckdb")
    assert code == 2 and "Traceback" in err  # --debug shows the traceback even of a clean error


LINKED_SPEC = """
name = "linked"
seed = 4

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 32

[data.options]
size = 200

[train]
epochs = 2
batch_size = 16
learning_rate = 2e-3

[adapt]
epochs = 1
learning_rate = 1e-3

[swa]
k = 2

[[members]]
name = "a"
backbone = "scratch"
options = { hidden_size = 32, layers = 1, heads = 2, vocab_size = 600 }
"""


def test_runs_and_adapted_may_be_links_to_shared_storage(tmp_path, run_cli):
    """A cluster's store may stay on the driver's disk with runs/ and adapted/ linked to a folder every
    node mounts (README, Scaling out): runner writes, resumes and cleans up through the links, and
    still deletes nothing outside them."""
    local, shared = tmp_path / "local", tmp_path / "shared"
    for name in ("runs", "adapted"):
        (shared / name).mkdir(parents=True)
    local.mkdir()
    (local / "runs").symlink_to(shared / "runs")
    (local / "adapted").symlink_to(shared / "adapted")
    spec = local / "spec.toml"
    spec.write_text(LINKED_SPEC)
    code, _, err = run_cli("apply", str(spec), "--store", str(local / "results.duckdb"))
    assert code == 0, err
    (run_dir,) = [p for p in (shared / "runs").iterdir() if p.is_dir()]
    assert sorted(p.name for p in (run_dir / "a").iterdir()) == ["selected", "swa"]  # epoch checkpoints removed
    (adapted,) = [p for p in (shared / "adapted").iterdir() if not p.name.startswith(".")]
    assert (adapted / "model.safetensors").is_file() and not list((shared / "adapted").glob("*.partial"))
    code, _, err = run_cli("apply", str(spec), "--store", str(local / "results.duckdb"), "--force")
    assert code == 0 and "adapt: reused" in err, err
    plain = local / "plain.toml"  # a second store beside it, with no adaptation
    plain.write_text(LINKED_SPEC.replace("[adapt]\nepochs = 1\nlearning_rate = 1e-3\n", ""))
    code, _, err = run_cli("apply", str(plain), "--store", str(local / "other.duckdb"))
    assert code == 0, err
    (local / "results.duckdb").unlink()
    code, out, err = run_cli("gc", "--store", str(local / "other.duckdb"))
    assert code == 0, err
    assert (local / "runs").is_symlink() and (local / "adapted").is_symlink()
    assert not adapted.exists() and (shared / "adapted").is_dir()  # the unreferenced encoder went, the link stayed
