"""`runner schema`: the spec's JSON Schema, plugins' options included (runner.spec.schema).

Every spec in specs/ validates against the schema `runner schema SPEC` prints (the `jsonschema`
package, files read with tomllib); a misspelt key is flagged where it is (top level, [train], a
scratch member's options, the focal loss's options, a member's own loss, a plugin's options) and so is
a wrong type. taplo (the TOML toolkit behind Even Better TOML; a dev dependency from PyPI) flags the
same typos through a `#:schema` line and through a `.taplo.toml` rule, as the README sets it up.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO / "specs").glob("*.toml"))


def schema_of(run_cli, *args) -> dict:
    code, out, err = run_cli("schema", *args)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def validators():
    """spec path -> a Draft 7 validator of the schema `runner schema SPEC` prints (its plugins included)."""
    from typer.testing import CliRunner

    from runner.cli import app

    out = {}
    for spec in SPECS:
        result = CliRunner().invoke(app, ["schema", str(spec)])
        assert result.exit_code == 0, result.stderr
        schema = json.loads(result.stdout)
        jsonschema.Draft7Validator.check_schema(schema)
        out[spec.name] = jsonschema.Draft7Validator(schema)
    return out


def problems(validator, doc) -> list[tuple[str, str]]:
    return sorted((".".join(map(str, e.absolute_path)), e.message) for e in validator.iter_errors(doc))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_spec_validates_against_the_schema(validators, spec):
    assert problems(validators[spec.name], tomllib.loads(spec.read_text(encoding="utf-8"))) == []


def _set(doc: dict, path: tuple, value) -> dict:
    d = copy.deepcopy(doc)
    target = d
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[path[-1]] = value
    return d


QUICKSTART = tomllib.loads((REPO / "specs" / "quickstart.toml").read_text(encoding="utf-8"))
GRU_POLY = tomllib.loads((REPO / "specs" / "gru_poly.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("spec, path, value, where, message", [
    ("quickstart.toml", ("seeed",), 1, "", "'seeed' was unexpected"),
    ("quickstart.toml", ("train", "epoch"), 5, "train", "'epoch' was unexpected"),
    ("quickstart.toml", ("members", 0, "options", "hiden_size"), 64, "members.0.options", "'hiden_size' was unexpected"),
    ("quickstart.toml", ("loss", "gama"), 2.0, "loss", "'gama' was unexpected"),
    ("quickstart.toml", ("members", 1, "loss"), {"name": "focal", "gama": 1.0}, "members.1.loss", "'gama' was unexpected"),
    ("quickstart.toml", ("members", 1, "loss"), {"gama": 1.0}, "members.1.loss", "'gama' was unexpected"),
    ("quickstart.toml", ("members", 0, "train"), {"learning_rat": 1e-3}, "members.0.train", "'learning_rat' was unexpected"),
    ("quickstart.toml", ("data", "options", "sise"), 10, "data.options", "'sise' was unexpected"),
    ("quickstart.toml", ("members", 0, "backbone"), "scrach", "members.0.backbone", "'scrach' is not one of"),
    ("quickstart.toml", ("train", "epochs"), "5", "train.epochs", "'5' is not of type 'integer'"),
    ("quickstart.toml", ("members", 0, "options", "hidden_size"), 64.5, "members.0.options.hidden_size",
     "is not of type 'integer'"),
    ("quickstart.toml", ("loss", "gamma"), "2", "loss.gamma", "is not of type 'number'"),
    ("gru_poly.toml", ("members", 0, "options", "embeding_dim"), 8, "members.0.options", "'embeding_dim' was unexpected"),
    ("gru_poly.toml", ("loss", "epsilonn"), 1.0, "loss", "'epsilonn' was unexpected"),
])
def test_a_misspelt_key_or_a_wrong_type_is_flagged_where_it_is(validators, spec, path, value, where, message):
    doc = _set(QUICKSTART if spec == "quickstart.toml" else GRU_POLY, path, value)
    found = problems(validators[spec], doc)
    assert found and all(w == where for w, _ in found), found
    assert any(message in m for _, m in found), found


def test_plugins_options_and_help_are_in_the_schema(run_cli):
    with_plugins = schema_of(run_cli, REPO / "specs" / "gru_poly.toml")
    builtin = schema_of(run_cli)
    assert "gru" in with_plugins["$defs"]["MemberSpec"]["properties"]["backbone"]["enum"]
    assert "gru" not in builtin["$defs"]["MemberSpec"]["properties"]["backbone"]["enum"]
    assert with_plugins == schema_of(run_cli, "--plugins", REPO / "plugins")
    scratch = builtin["$defs"]["ScratchOptions"]["properties"]["hidden_size"]
    assert scratch["description"] and scratch["maximum"] == 8192
    member = builtin["$defs"]["MemberSpec"]["properties"]
    assert member["options"]["properties"]["hidden_size"]["description"] == scratch["description"]  # completion
    assert builtin["properties"]["members"]["description"] and builtin["$defs"]["TrainSpec"]["properties"][
        "epochs"]["description"]
    assert "gamma" in builtin["$defs"]["LossSpec"]["properties"]


def test_schema_out_never_overwrites_a_file_it_did_not_write(run_cli, tmp_path):
    target = tmp_path / "runner.schema.json"
    code, _, err = run_cli("schema", "--out", target)
    assert code == 0 and json.loads(target.read_text())["title"] == "runner spec", err
    code, _, err = run_cli("schema", "--out", target)  # an earlier schema is replaced
    assert code == 0, err
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "settings"}')
    for bad in (mine, tmp_path / "s.toml", tmp_path / "missing" / "s.json", tmp_path):
        before = bad.read_bytes() if bad.is_file() else None
        code, _, err = run_cli("schema", "--out", bad)
        assert code == 2 and "--out" in err, err
        assert (bad.read_bytes() if bad.is_file() else None) == before
    code, _, err = run_cli("schema", tmp_path / "nope.toml")
    assert code == 2 and "nope.toml" in err


TAPLO = shutil.which("taplo", path=str(Path(sys.executable).parent)) or shutil.which("taplo")


@pytest.mark.skipif(TAPLO is None, reason="taplo is a dev dependency (pip install -e '.[dev]')")
def test_taplo_flags_a_typo_through_the_schema_line_and_a_taplo_toml_rule(run_cli, tmp_path):
    code, _, err = run_cli("schema", "--out", tmp_path / "runner.schema.json")
    assert code == 0, err
    text = (REPO / "specs" / "quickstart.toml").read_text(encoding="utf-8")
    typo = text.replace("\nepochs = 5", "\nepoch = 5").replace("hidden_size = 96", "hiden_size = 96")
    assert typo != text
    (tmp_path / "good.toml").write_text("#:schema ./runner.schema.json\n" + text)
    (tmp_path / "bad.toml").write_text("#:schema ./runner.schema.json\n" + typo)

    def check(*args, cwd=tmp_path):
        return subprocess.run([TAPLO, "check", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                              timeout=60)

    good = check("good.toml")
    assert good.returncode == 0, good.stderr
    bad = check("bad.toml")
    assert bad.returncode == 1
    assert "'epoch' was unexpected" in bad.stderr and "'hiden_size' was unexpected" in bad.stderr
    # the same from a .taplo.toml rule, for specs without the first line, checked from another folder
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "bad.toml").write_text(typo)
    (tmp_path / "specs" / "good.toml").write_text(text)
    (tmp_path / ".taplo.toml").write_text('[[rule]]\ninclude = ["specs/*.toml"]\n\n[rule.schema]\n'
                                          'path = "./runner.schema.json"\n')
    assert check("specs/good.toml").returncode == 0
    bad = check("specs/bad.toml")
    assert bad.returncode == 1 and "'epoch' was unexpected" in bad.stderr
