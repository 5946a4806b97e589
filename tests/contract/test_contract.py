"""Property-based search for broken promises: the exit-code contract of docs/design.md, checked on inputs
nobody listed.

Hypothesis draws a small valid spec with a few fields broken, or broken data files, or a broken
store, or odd command-line arguments (contract_strategies.py), and runs the real CLI in-process in a
sandbox (contract_harness.py); each kind of case is built and run by contract_checks.py and judged by
the rules of contract_oracle.py. This file holds the properties, the examples found, and the golden
run they share. Each command must end in exactly one of:

- exit 0, and what it promised is there (for `apply`: one finished run whose members all stored
  predictions with exactly num_labels finite probabilities per row), with nothing written outside the
  store's folder, the spec's folder, the working directory and $HOME left as they were;
- exit 2, with one paragraph naming the file or argument and the key, and nothing written: the store
  byte-identical (or still absent), no `runs/` entry, no other file;
- exit 1, only for a fault no check could predict (a loss that turns NaN mid-training), with the run
  marked `failed`.

Never a traceback on screen, never an exception out of the CLI, never "internal error".

Budgets: `RUNNER_HYPOTHESIS_PROFILE=ci` (the default: derandomized, a fixed number of examples, a
few minutes on two cores) or `deep` (ten times as many, random seeds, for searching).
`RUNNER_CONTRACT_SCALE=3` multiplies either profile's example counts.

Every violation the search has found is kept as an `@example` (SPEC_FOUND ... CLI_FOUND) and, where
the corpus can hold it, as a case in tests/bad_inputs/. While a bug is open it has a KNOWN_BUGS entry:
its example is xfail, its case has `known_bug`, and the random search does not fail on that root cause
(so that it keeps finding new ones; `RUNNER_CONTRACT_STRICT=1` makes it fail). When the bug is fixed
the example passes and Hypothesis reports it: delete the KNOWN_BUGS entry and the case's `known_bug`.

`RUNNER_CONTRACT_REPORT=file.jsonl` is survey mode for long searches: every violation is appended to
the file (rule, case, command, output, traceback) and none fails the test.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import contract_strategies as cs
import pytest
from contract_checks import (
    GOLDEN_DOC,
    check_cli_case,
    check_data_case,
    check_spec_case,
    check_store_case,
    ensemble_rows_rules,
    golden_run_id,
    write_base_files,
)
from contract_harness import (
    KNOWN_BUGS,
    STATS,
    Call,
    ContractViolation,
    Hang,
    Sandbox,
    World,
    budget,
    invoke,
    sandbox,
    verdict,
)
from contract_oracle import (
    common_rules,
    exit2_rules,
    failed_run_rules,
    finished_run_rules,
    home_rule,
    spec_key_evidence,
    written_outside,
)
from hypothesis import example, given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
duckdb = pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def world():
    """A private $HOME, and one finished two-member run (the golden store) that cases copy."""
    from typer.testing import CliRunner

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="runner-contract-"))
    home = root / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        import huggingface_hub.constants

        mp.setenv("HOME", str(home))
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        # no Hub access here: a Hub id fails at once instead of after half a minute of retries
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root / "hub-cache"))
        from runner.cli import app

        w = World(root, home, root / "golden" / "in", root / "golden" / "out", CliRunner(), app=app)
        w.tiny_model = root / "tiny-hf"
        cs.save_tiny_hf_model(w.tiny_model, [r["text"] for r in cs.base_rows()])
        w.golden_in.mkdir(parents=True)
        w.golden_out.mkdir(parents=True)
        (w.golden_in / "spec.toml").write_text(cs.toml_dumps(GOLDEN_DOC), encoding="utf-8")
        call = invoke(w, ["apply", str(w.golden_in / "spec.toml"), "--store", str(w.golden_out / "results.duckdb")])
        assert call.exit_code == 0, call.describe()
        # warm matplotlib's font list once (in runner's own cache folder, runner.core.dirs), so that no
        # example pays for building it
        call = invoke(w, ["plot", "--store", str(w.golden_out / "results.duckdb"), "--out", str(root / "warm.png")])
        assert call.exit_code == 0, call.describe()
        (root / "warm.png").unlink()
        yield w
        if STATS:
            print("\nknown bugs hit by the contract search:",
                  ", ".join(f"{k} x{n}" for k, n in sorted(STATS.items())))
    shutil.rmtree(root, ignore_errors=True)


# -- the emitter itself ------------------------------------------------------------------------------

toml_values = st.recursive(
    st.none().map(lambda _: 0) | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(alphabet=st.characters(exclude_categories=("Cs",))),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@budget("spec")
@given(doc=st.dictionaries(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=6), toml_values,
                           max_size=4),
       case=cs.spec_cases())
def test_the_toml_writer_round_trips(doc, case):
    assert cs.toml_round_trips(doc), cs.toml_dumps(doc)
    spec = cs.base_doc(case["base"])
    cs.apply_ops(spec, case["ops"])
    assert cs.toml_round_trips(spec), cs.toml_dumps(spec)


def test_the_starting_points_are_valid_and_train(world):
    """Every base spec passes validate and trains: a case that fails, fails because of its change."""
    for base in cs.BASES:
        with sandbox(world) as sb:
            write_base_files(base, sb.inp)
            (sb.inp / "spec.toml").write_text(cs.toml_dumps(cs.base_doc(base)), encoding="utf-8")
            call = invoke(world, ["validate", str(sb.inp / "spec.toml")])
            assert call.exit_code == 0, call.describe()
            call = invoke(world, ["apply", str(sb.inp / "spec.toml"), "--store", str(sb.store)])
            assert call.exit_code == 0, call.describe()
            assert not finished_run_rules(call, base, "spec", sb.store, set(), len(cs.base_doc(base)["members"]),
                                          2 if base in ("csv", "jsonl") else 4)


def test_every_rule_of_the_oracle_can_fail(world, tmp_path):
    """A check that cannot fail is a defect: each rule, fed what it must flag, flags it (and passes
    what it must pass)."""
    ok = Call(["runs"], 0, "", "", None)
    assert not common_rules(ok, {}, "cli")
    rules = lambda call: {v.rule for v in common_rules(call, {}, "cli")}  # noqa: E731
    assert rules(Call(["x"], 1, "", "Traceback (most recent call last):\n  File", None)) == {"traceback-on-screen"}
    assert rules(Call(["x"], 1, "", "", ValueError("boom"))) == {"exception-escaped"}
    assert rules(Call(["x"], 3, "", "", None)) == {"exit-code"}
    assert rules(Call(["x"], 1, "", "internal error: KeyError 'a'", None)) == {"internal-error"}
    assert rules(Call(["x"], None, "", "", Hang("slow"))) == {"hang"}

    (tmp_path / "in").mkdir()
    sb = Sandbox(tmp_path, tmp_path / "in", tmp_path / "out", tmp_path / "cwd", world)
    for d in (sb.out, sb.cwd):
        d.mkdir()
    before = sb.snap()
    good = Call(["validate"], 2, "", f"error: {sb.inp}/spec.toml: train.epochs: must be >= 1", None)
    assert not exit2_rules(good, {}, "spec", [str(sb.inp)], ["train.epochs"], before, sb.snap(), None, None)
    two = Call(["validate"], 2, "", f"error: {sb.inp}/spec.toml:\n\n  train.epochs: bad", None)
    assert [v.detail for v in exit2_rules(two, {}, "spec", [str(sb.inp)], ["train.epochs"], before, sb.snap(),
                                          None, None)] == ["the message is not one paragraph"]
    vague = Call(["validate"], 2, "", "error: something is wrong", None)
    assert len(exit2_rules(vague, {}, "spec", [str(sb.inp)], ["train.epochs"], before, sb.snap(), None, None)) == 2
    (sb.out / "runs").mkdir()
    wrote = exit2_rules(good, {}, "spec", [str(sb.inp)], ["train.epochs"], before, sb.snap(), b"a", b"b")
    assert {v.rule for v in wrote} == {"exit-2-wrote"} and len(wrote) == 2
    (sb.cwd / "stray.png").write_bytes(b"x")
    assert written_outside(before, sb.snap(), allowed={"out"}) == ["cwd: created stray.png"]
    (world.home / ".duckdb").mkdir()
    try:
        assert home_rule(ok, {}, "store", before, sb.snap())[0].rule == "wrote-home"
    finally:
        (world.home / ".duckdb").rmdir()

    golden = world.golden_out / "results.duckdb"
    assert not finished_run_rules(ok, {}, "cli", golden, set(), 2, 4)
    assert finished_run_rules(ok, {}, "cli", golden, set(), 3, 4)[0].rule == "exit-0-store"
    assert finished_run_rules(ok, {}, "cli", golden, set(), 2, 5)[0].rule == "exit-0-store"
    assert finished_run_rules(ok, {}, "cli", golden, {golden_run_id(world)}, 2, 4)[0].rule == "exit-0-store"
    assert finished_run_rules(ok, {}, "cli", tmp_path / "absent.duckdb", set(), 2, 4)[0].rule == "exit-0-store"
    nan_loss = Call(["apply"], 1, "", "a: failed: member a: the training loss became nan in epoch 1", None)
    assert failed_run_rules(nan_loss, {}, "spec", golden, set(), predictable=True)[0].rule == "exit-1-predictable"
    crash = Call(["apply"], 1, "", "error: could not create runs/x", None)
    assert failed_run_rules(crash, {}, "spec", golden, set(), predictable=False)[0].rule == "exit-1-predictable"
    assert failed_run_rules(nan_loss, {}, "spec", golden, set(), predictable=False)[0].rule == "exit-1-state"
    assert not ensemble_rows_rules(ok, {}, golden)
    assert spec_key_evidence([["set", ["train", "epochs"], 0]])[:2] == ["train.epochs", "[train].epochs"]
    assert spec_key_evidence([["set", [""], 0]]) is None


# -- the properties ----------------------------------------------------------------------------------
# Every violation the search found, kept as a permanent example: (minimal input, its case folder in
# tests/bad_inputs/, or "contract:<name>" where the corpus cannot hold it: the right exit is 0, or the
# case needs a finished run, which the corpus cannot make). Examples whose bug is still open are xfail.

inf, nan = math.inf, math.nan
SPEC_FOUND = [
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "batch_eval_metrics"], True]]},
     "spec-trainer-args-batch-eval-metrics"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "adam_beta2"], 1.0]]},
     "spec-trainer-args-adam-beta2-one"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "adam_epsilon"], nan]]},
     "spec-trainer-args-adam-epsilon-nan"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "adam_beta1"], 0]]},
     "spec-trainer-args-adam-beta1-integer"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "eval_steps"], "."]]},
     "spec-trainer-args-eval-steps-string"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "debug"], 0.5]]},
     "spec-trainer-args-debug-float"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "prediction_loss_only"], True]]},
     "spec-trainer-args-prediction-loss-only"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "eval_do_concat_batches"], False]]},
     "spec-trainer-args-eval-do-concat-batches"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "eval_accumulation_steps"], 0]]},
     "spec-trainer-args-eval-accumulation-zero"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "dataloader_persistent_workers"], True]]},
     "spec-trainer-args-persistent-workers"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "optim"], "galore_adamw"]]},
     "spec-trainer-args-optim-not-installed"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "lr_scheduler_kwargs"], {"foo": 1}]]},
     "spec-trainer-args-lr-scheduler-kwargs-unknown"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "accelerator_config"], ""]]},
     "spec-trainer-args-accelerator-config-empty"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "ddp_timeout"], 2**63 - 1]]},
     "spec-trainer-args-ddp-timeout-huge"),
    ({"base": "synthetic",
      "ops": [["set", ["train", "trainer_args", "deepspeed"], {"zero_optimization": {"stage": 2}}]]},
     "spec-trainer-args-deepspeed-not-installed"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "accelerator_config"], {"nope": 1}]]},
     "spec-trainer-args-accelerator-config-unknown-key"),
    ({"base": "synthetic", "ops": [["set", ["loss", "name"], "focal"], ["set", ["loss", "gamma"], inf]]},
     "spec-focal-gamma-inf"),
    ({"base": "synthetic", "ops": [["set", ["train", "weight_decay"], inf]]}, "spec-weight-decay-inf"),
    ({"base": "synthetic", "ops": [["set", ["train", "warmup"], inf]]}, "spec-warmup-inf"),
    ({"base": "synthetic", "ops": [["set", ["train", "batch_size"], 2**63 - 1]]}, "spec-batch-size-huge"),
    ({"base": "synthetic", "ops": [["set", ["members", 0, "seed"], 2**32]]}, "spec-member-seed-too-large"),
    ({"base": "synthetic", "ops": [["set", ["members", 0, "name"], "a" * 300]]}, "spec-member-name-too-long"),
    ({"base": "synthetic", "ops": [["set", ["selection", "metric"], ""]]}, "spec-selection-metric-empty"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "dataloader_drop_last"], True]]},
     "spec-trainer-args-drop-last-small-split"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "debug"], "underflow_overflow"]]},
     "spec-trainer-args-debug-underflow-overflow"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "use_liger_kernel"], True]]},
     "spec-trainer-args-liger-kernel-not-installed"),
    ({"base": "synthetic", "ops": [["set", ["members", 0, "options", "intermediate_size"], 2**63 - 1]]},
     "spec-scratch-intermediate-size-huge"),
    ({"base": "csv", "ops": [["set", ["data", "options", "delimiter"], "\x00"]]}, "data-csv-delimiter-not-ascii"),
    ({"base": "csv", "ops": [["append", ["members"], {"backbone": "hf", "options": {}, "model": m}]
                             for m in ("m1/bert-base", "m2/bert-base", "m3/bert-base-1")]},
     "contract:member-names-clash"),
    # Trainer 5 evaluated through a shuffled sampler under group_by_length, so every stored probability
    # went to another example (found by hand; tests/run/test_apply.py::test_group_by_length_stores_every_
    # probability_against_its_own_example proves it, since a 1-epoch model here predicts one class for
    # all, which the stored-accuracy rule of finished_run_rules cannot tell apart from any order)
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "train_sampling_strategy"], "group_by_length"]]},
     "contract:group-by-length-evaluation-order"),
    ({"base": "synthetic", "ops": [["set", ["train", "group_by_length"], True]]},
     "contract:group-by-length-evaluation-order"),
]
DATA_FOUND = [
    ({"fmt": "csv", "labels": "words", "declared": "none", "rows": 4, "text": "plain", "corrupt": [], "valid": 0.25,
      "test": None}, "data-valid-fraction-rounds-to-empty"),
    ({"fmt": "jsonl", "labels": "lists", "declared": "none", "rows": 40, "text": "plain", "corrupt": [],
      "valid": 0.25, "test": None}, "data-label-list-jsonl"),
    ({"fmt": "csv", "labels": "years", "declared": "none", "rows": 40, "text": "plain", "corrupt": [], "valid": 0.25,
      "test": None}, "contract:integer-labels-are-ids"),
    ({"fmt": "jsonl", "labels": "words", "declared": "none", "rows": 40, "text": "plain", "corrupt": ["cp949"],
      "valid": 0.25, "test": None}, "data-jsonl-not-utf8"),
    ({"fmt": "csv", "labels": "words", "declared": "none", "rows": 40, "text": "plain", "corrupt": ["latin1", "empty"],
      "valid": 0.25, "test": None}, "data-csv-header-not-utf8"),
    ({"fmt": "csv", "labels": "words", "declared": "none", "rows": 40, "text": "plain", "corrupt": ["dup_header"],
      "valid": 0.25, "test": None}, "data-duplicate-header"),
]
STORE_FOUND = [
    ({"store": "garbage", "command": "runs"}, "store-garbage-bytes"),
    ({"store": "none", "command": "compare"}, "store-garbage-bytes"),
    ({"store": "truncated_half", "command": "runs"}, "store-runs-truncated"),
    ({"store": "sqlite", "command": "sql"}, "store-sqlite"),
    ({"store": "memory", "command": "apply"}, "store-memory"),
    ({"store": "long_name", "command": "runs"}, "contract:path-too-long"),
    ({"store": "none", "command": "ensemble"}, "cli-ensemble-no-store"),
]
CLI_FOUND = [
    ({"command": "plugins", "format": None, "plugins": cs.LONG}, "cli-plugins-path-too-long"),
    ({"command": "plot", "run": None, "out": ""}, "contract:plot-out-empty"),
    ({"command": "plot", "run": None, "out": "{read_only}/plot.png"}, "contract:plot-out-read-only"),
    ({"command": "plot", "run": None, "out": "{store}"}, "cli-plot-out-is-the-store"),
    ({"command": "sql", "query": "DETACH DATABASE memory", "allow_write": True, "format": None},
     "cli-sql-detach-memory"),
    ({"command": "ensemble", "run": None, "weights": "nan,1", "members": None, "checkpoint": None, "name": None,
      "format": None}, "contract:ensemble-weights-not-finite"),
    ({"command": "plot", "run": None, "out": cs.LONG + ".png"}, "cli-plot-out-name-too-long"),
]


def found(examples):
    """The examples above as `@example`s, judged strictly (KNOWN_BUGS does not excuse them); those whose
    bug is still open (in KNOWN_BUGS) are xfail, so that fixing one is reported."""
    open_bugs = {bug.case for bug in KNOWN_BUGS}

    def deco(fn):
        for case, bug in reversed(examples):
            ex = example(case=dict(case, found=bug))
            if bug in open_bugs:
                where = f"tests/bad_inputs/{bug}" if not bug.startswith("contract:") else f"KNOWN_BUGS {bug!r}"
                ex = ex.xfail(reason=f"known bug, see {where}", raises=ContractViolation)
            fn = ex(fn)
        return fn

    return deco



@budget("spec")
@given(case=cs.spec_cases())
@found(SPEC_FOUND)
def test_spec_mutations_keep_the_contract(world, case):
    verdict(check_spec_case(world, case), case)


@budget("data")
@given(case=cs.data_cases())
@found(DATA_FOUND)
def test_data_mutations_keep_the_contract(world, case):
    verdict(check_data_case(world, case), case)


@budget("store")
@given(case=cs.store_cases())
@found(STORE_FOUND)
def test_store_mutations_keep_the_contract(world, case):
    verdict(check_store_case(world, case), case)


@budget("cli")
@given(case=cs.cli_cases())
@found(CLI_FOUND)
def test_cli_arguments_keep_the_contract(world, case):
    verdict(check_cli_case(world, case), case)
