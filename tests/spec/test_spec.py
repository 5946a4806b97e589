"""Specs: every example spec resolves; every kind of spec error is reported through `runner validate`
with exit code 2, the file and key path, and no traceback.

Specs here use the `synthetic` loader with 200 examples and tiny `scratch` members, so validation
(which loads and checks the data, but trains nothing) takes a moment.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.plugins.registry import load_registry
from runner.spec import load_and_resolve

REPO = Path(__file__).resolve().parents[2]

HEADER = """\
name = "t"
seed = 3
"""
DATA = """\
[data]
source = "synthetic"
valid = 0.2

[data.options]
size = 200
"""
MEMBERS = """\
[[members]]
name = "a"
backbone = "scratch"
options = { hidden_size = 32, heads = 2, layers = 1 }

[[members]]
name = "b"
backbone = "scratch"
options = { hidden_size = 32, heads = 2, layers = 1 }
"""


def spec_text(top: str = "", sections: str = "", members: str = MEMBERS, data: str = DATA) -> str:
    """A valid two-member spec, with extra top-level keys, extra sections, or other members."""
    return HEADER + top + "\n" + data + "\n" + sections + "\n" + members


@pytest.fixture(scope="module")
def registry():
    return load_registry(REPO / "plugins")


def validate_fails(run_cli, path: Path) -> str:
    """Run `runner validate` on a bad spec; check exit 2 and no traceback; return stderr."""
    code, out, err = run_cli("validate", path, "--no-check-models")
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert path.name in err
    return err


# ---------------------------------------------------------------------------- the example specs


@pytest.mark.parametrize("spec_path", sorted((REPO / "specs").glob("*.toml")), ids=lambda p: p.name)
def test_example_spec_resolves(spec_path, registry):
    resolved = load_and_resolve(spec_path, registry)
    assert resolved.members, spec_path
    assert len({m.name for m in resolved.members}) == len(resolved.members)
    d = resolved.to_dict()
    assert d["selection"]["resolved"]["metric"].startswith("eval_")
    assert len(resolved.spec_hash()) == 64


def test_the_quickstart_is_among_the_example_specs():
    assert (REPO / "specs" / "quickstart.toml").is_file()


# ------------------------------------------------- options added after runs were stored (spec.compat)

# A spec with focal loss and a BERT and a RoBERTa scratch member, and the hashes runner gave it and
# a RoBERTa-only spec before `[loss] modulation` and the scratch `tokenizer` option existed (computed
# with runner at a99bf50): a run stored then is found again by these hashes.
BEFORE = """\
name = "h"
seed = 3

[data]
source = "synthetic"

[loss]
name = "focal"
label_smoothing = 0.1{modulation}

[[members]]
backbone = "scratch"
options = {{ architecture = "bert"{tokenizer} }}

[[members]]
backbone = "scratch"
options = {{ architecture = "roberta" }}
"""
BEFORE_HASH = "f666dde5d2ea6315eaa0e83e731e989994756b3fb5057a432c6eff24950e27fa"
ROBERTA_ONLY = """\
name = "r"

[data]
source = "synthetic"

[[members]]
backbone = "scratch"
options = { architecture = "roberta" }
"""
ROBERTA_ONLY_HASH = "7fdc630fb8c0aa4cd8558b2ec5b4de6ef871a070e86ce8ac53e5504044b85ae1"


def test_new_defaults_give_new_hashes_and_the_old_behaviour_asked_by_name_finds_old_runs(write_spec, registry):
    """The new defaults (subword `wordpiece` for BERT, `true_class` focal) trained differently, so an
    old run is never continued as if it had; `tokenizer = "words"` and `modulation = "per_class"` are
    what runner did before, so asking for them by name continues those runs; RoBERTa's tokenizer is
    unchanged, so a spec without focal or BERT keeps its hash."""
    default = load_and_resolve(write_spec(BEFORE.format(modulation="", tokenizer=""), "a.toml"), registry)
    assert [m.options.tokenizer for m in default.members] == ["wordpiece", "bpe"]
    assert [m.loss_options.modulation for m in default.members] == ["true_class"] * 2
    assert default.spec_hash() != BEFORE_HASH
    # validate prints (and the store keeps) every value, the old ones included
    assert default.to_dict()["members"][1]["options"]["tokenizer"] == "bpe"

    asked = BEFORE.format(modulation='\nmodulation = "per_class"', tokenizer=', tokenizer = "words"')
    old = load_and_resolve(write_spec(asked, "b.toml"), registry)
    assert old.spec_hash() == BEFORE_HASH
    assert old.to_dict()["loss"]["modulation"] == "per_class" and old.to_dict()["members"][0]["options"]["tokenizer"] == "words"
    # one of the two asked for is still a new run
    half = load_and_resolve(write_spec(BEFORE.format(modulation='\nmodulation = "per_class"', tokenizer=""), "c.toml"),
                            registry)
    assert half.spec_hash() not in (BEFORE_HASH, default.spec_hash())
    assert load_and_resolve(write_spec(ROBERTA_ONLY, "d.toml"), registry).spec_hash() == ROBERTA_ONLY_HASH


def test_a_stored_spec_without_the_new_options_reads_as_what_runner_did_then(write_spec, registry):
    """What a refit reads back from an old run: no `tokenizer`, no `modulation` (runner.run.refit resolves
    stored specs with `stored=True`), is the old vocabulary and per_class focal, and hashes as before."""
    from runner.spec import Spec, resolve

    d = load_and_resolve(write_spec(BEFORE.format(modulation="", tokenizer=""), "a.toml"), registry).to_dict()
    d["selection"].pop("resolved")
    for m in d["members"]:
        del m["options"]["tokenizer"], m["loss"]["modulation"]
    stored = resolve(Spec.model_validate(d), registry, "run r1", stored=True)
    assert [m.options.tokenizer for m in stored.members] == ["words", "bpe"]
    assert [m.loss_options.modulation for m in stored.members] == ["per_class"] * 2
    fresh = resolve(Spec.model_validate(d), registry, "spec.toml")
    assert [m.options.tokenizer for m in fresh.members] == ["wordpiece", "bpe"]


def test_scratch_tokenizer_must_fit_the_architecture(write_spec, run_cli):
    members = MEMBERS.replace("options = { hidden_size = 32, heads = 2, layers = 1 }\n\n",
                              'options = { architecture = "roberta", tokenizer = "wordpiece" }\n\n', 1)
    err = validate_fails(run_cli, write_spec(spec_text(members=members)))
    assert "members[0].options" in err and "'bpe'" in err


# ---------------------------------------------------------------------------- a good spec


def test_validate_good_spec_prints_resolved_spec_with_defaults(write_spec, run_cli):
    path = write_spec(spec_text())
    code, out, err = run_cli("validate", path, "--no-check-models", "--show-spec")
    assert code == 0, err
    resolved = tomllib.loads(out)
    # not in the file, filled in from the defaults
    assert resolved["train"]["lr_scheduler"] == "linear"
    assert resolved["loss"]["name"] == "cross_entropy"
    assert "resolved" not in resolved["selection"]  # runner's own reading of [selection], not a spec key
    assert [m["name"] for m in resolved["members"]] == ["a", "b"]
    assert resolved["members"][0]["options"]["architecture"] == "bert"  # backbone option default
    assert resolved["members"][1]["seed"] == 4  # spec seed + member index
    assert resolved["data"]["options"]["size"] == 200
    code, out, err = run_cli("validate", path, "--no-check-models")  # the summary says how it selects
    assert code == 0 and out.startswith("ok ") and "by eval_accuracy (best_eval_accuracy)" in out, err


def test_loss_selection_direction_is_inferred_and_forced(write_spec, registry):
    path = write_spec(spec_text(sections='[selection]\nmetric = "eval_loss"\n'))
    r = load_and_resolve(path, registry)
    assert (r.metric, r.greater_is_better) == ("loss", False)
    path = write_spec(spec_text(sections='[selection]\nmetric = "-eval_accuracy"\n'))
    r = load_and_resolve(path, registry)
    assert (r.metric, r.greater_is_better) == ("accuracy", False)


# ---------------------------------------------------------------------------- one error each


def test_unknown_top_level_key(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(top="colour = 1\n")))
    assert "spec.toml: colour: unknown key" in err


def test_unknown_key_in_member_options(write_spec, run_cli):
    head, _, last = MEMBERS.rpartition("layers = 1 }")
    members = head + "layers = 1, hidden_sise = 3 }" + last  # the second member only
    err = validate_fails(run_cli, write_spec(spec_text(members=members)))
    assert "spec.toml: members[1].options.hidden_sise: unknown key" in err
    assert "members[0]" not in err


def test_bad_member_option_value_names_the_key(write_spec, run_cli):
    members = MEMBERS.replace("hidden_size = 32", "hidden_size = -1", 1)
    err = validate_fails(run_cli, write_spec(spec_text(members=members)))
    assert "spec.toml: members[0].options.hidden_size:" in err


def test_wrong_type(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(sections='[train]\nepochs = "five"\n')))
    assert "spec.toml: train.epochs:" in err
    assert "integer" in err


def test_focal_alpha_of_wrong_length(write_spec, run_cli):
    sections = '[loss]\nname = "focal"\nalpha = [1.0, 2.0, 3.0]\n'
    err = validate_fails(run_cli, write_spec(spec_text(sections=sections)))
    assert "spec.toml: loss.alpha:" in err
    assert "3 values" in err and "4 labels" in err


def test_focal_alpha_problem_is_reported_once(write_spec, run_cli):
    sections = '[loss]\nname = "focal"\nalpha = [1.0, 2.0, 3.0]\n'
    err = validate_fails(run_cli, write_spec(spec_text(sections=sections)))
    assert err.count("loss.alpha:") == 1


def test_member_loss_override_error_names_the_member(write_spec, run_cli):
    members = MEMBERS.replace('name = "b"\n', 'name = "b"\nloss = { name = "focal", alpha = [1.0] }\n')
    err = validate_fails(run_cli, write_spec(spec_text(members=members)))
    assert "spec.toml: members[1].loss.alpha:" in err


def test_ensemble_weights_count(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(sections="[ensemble]\nweights = [1.0, 2.0, 3.0]\n")))
    assert "spec.toml: ensemble.weights:" in err
    assert "3 weights for 2 members" in err


def test_selection_metric_nothing_produces(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(sections='[selection]\nmetric = "eval_precision"\n')))
    assert "spec.toml: selection.metric: unknown metric 'eval_precision'" in err
    assert "eval_accuracy" in err  # lists what is available


def test_duplicate_member_names(write_spec, run_cli):
    members = MEMBERS.replace('name = "b"', 'name = "a"')
    err = validate_fails(run_cli, write_spec(spec_text(members=members)))
    assert "spec.toml: members[1].name: duplicate member name 'a'" in err


def test_unknown_backbone(write_spec, run_cli):
    members = MEMBERS.replace('backbone = "scratch"', 'backbone = "bertt"', 1)
    err = validate_fails(run_cli, write_spec(spec_text(members=members)))
    assert "spec.toml: members[0].backbone: unknown backbone 'bertt'" in err
    assert "scratch" in err


def test_unknown_loss(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(sections='[loss]\nname = "focall"\n')))
    assert "spec.toml: loss.name: unknown loss 'focall'" in err
    assert "did you mean 'focal'" in err


def test_unknown_dataset_source(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(data=DATA.replace('"synthetic"', '"csvv"'))))
    assert "spec.toml: data.source: unknown dataset 'csvv'" in err
    assert "did you mean 'csv'" in err


def test_bad_toml_syntax(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(top="x = = 1\n")))
    assert "spec.toml: invalid TOML" in err
    assert "line" in err


def test_missing_spec_file(tmp_path, run_cli):
    code, out, err = run_cli("validate", tmp_path / "nope.toml", "--no-check-models")
    assert code == 2
    assert "nope.toml" in err and "not found" in err
    assert "Traceback" not in out + err


def test_several_problems_are_reported_together(write_spec, run_cli):
    members = MEMBERS.replace("layers = 1 }", "layers = 1, colour = 3 }", 1)
    text = spec_text(top="bogus = true\n", sections='[train]\nepochs = "five"\n', members=members)
    err = validate_fails(run_cli, write_spec(text))
    assert "spec.toml: bogus: unknown key" in err
    assert "spec.toml: train.epochs:" in err
    assert "spec.toml: members[0].options.colour: unknown key" in err
    assert "3 problems" in err


def test_structural_and_registry_problems_are_reported_together(write_spec, run_cli):
    members = MEMBERS.replace('name = "b"', 'name = "a"').replace('backbone = "scratch"', 'backbone = "nope"', 1)
    text = spec_text(sections='[train]\nepochs = 0\n[selection]\nmetric = "eval_precision"\n'
                              "[ensemble]\nweights = [1.0]\n", members=members)
    err = validate_fails(run_cli, write_spec(text))
    for key in ("train.epochs", "members[1].name", "members[0].backbone", "selection.metric", "ensemble.weights"):
        assert f"spec.toml: {key}:" in err, key


def test_spec_error_lists_problems_as_file_key_message(write_spec, registry):
    path = write_spec(spec_text(top="colour = 1\n", sections='[train]\nepochs = "five"\n'))
    with pytest.raises(SpecError) as info:
        load_and_resolve(path, registry)
    assert set(info.value.problems) >= {("colour", "unknown key")}
    assert {loc for loc, _ in info.value.problems} == {"colour", "train.epochs"}


# ---------------------------------------------------------------------------- [train.trainer_args]


def test_trainer_args_unknown_field_suggests(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(sections='[train.trainer_args]\nreport_too = "none"\n')))
    assert "spec.toml: train.trainer_args:" in err
    assert "'report_too'" in err and "did you mean 'report_to'" in err


def test_trainer_args_owned_field_names_spec_field(write_spec, run_cli):
    err = validate_fails(run_cli, write_spec(spec_text(sections="[train.trainer_args]\nnum_train_epochs = 3\n")))
    assert "spec.toml: train.trainer_args:" in err
    assert "'num_train_epochs' is set by runner" in err
    assert "[train].epochs" in err


def test_trainer_args_valid_fields_pass(write_spec, run_cli):
    path = write_spec(spec_text(sections='[train.trainer_args]\nreport_to = "none"\ntorch_compile = false\n'))
    code, out, err = run_cli("validate", path, "--no-check-models", "--show-spec")
    assert code == 0, err
    assert tomllib.loads(out)["train"]["trainer_args"] == {"report_to": "none", "torch_compile": False}


def test_trainer_args_are_checked_against_the_field_types(write_spec, run_cli):
    # an integer where a float belongs is that float (TOML writes 0 and 0.0 differently; torch's AdamW
    # refuses betas that mix ints and floats)
    path = write_spec(spec_text(sections="[train.trainer_args]\nadam_beta1 = 0\n"))
    code, out, err = run_cli("validate", path, "--no-check-models", "--show-spec")
    assert code == 0, err
    assert tomllib.loads(out)["train"]["trainer_args"]["adam_beta1"] == 0.0
    assert isinstance(tomllib.loads(out)["train"]["trainer_args"]["adam_beta1"], float)
    # a string of digits where a number belongs, a number where a string belongs: named, exit 2
    for line, key in (('eval_accumulation_steps = "4"', "eval_accumulation_steps"), ("debug = 0.5", "debug"),
                      ("dataloader_num_workers = true", "dataloader_num_workers")):
        path = write_spec(spec_text(sections=f"[train.trainer_args]\n{line}\n"))
        code, out, err = run_cli("validate", path, "--no-check-models")
        assert code == 2 and f"train.trainer_args: '{key}' must be" in err, (line, err)
