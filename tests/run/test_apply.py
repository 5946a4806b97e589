"""End to end: `runner apply` through the real CLI on a tiny spec, then the store is checked against
members x epochs x examples, and the saved checkpoint against the stored predictions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from runner.cli import app
from runner.plugins.registry import load_registry
from runner.store import Store
from runner.train.backbones import load_checkpoint

REPO = Path(__file__).resolve().parents[2]

TINY_SPEC = """
name = "tiny"
seed = 3

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 48

[data.options]
size = {size}

[train]
epochs = {epochs}
batch_size = 32
learning_rate = 2e-3
lr_scheduler = "constant"

[loss]
name = "focal"
alpha = 1.0
gamma = 2.0
label_smoothing = 0.1

[selection]
metric = "eval_accuracy"

[[members]]
name = "bert"
backbone = "scratch"
options = {{ architecture = "bert", hidden_size = 32, layers = 2, heads = 2, vocab_size = 2000 }}

[[members]]
name = "gru"
backbone = "gru"
options = {{ embedding_dim = 32, hidden_size = 32, vocab_size = 2000 }}
loss = {{ name = "poly1", epsilon = 1.0 }}
"""

SIZE, EPOCHS, MEMBERS = 300, 3, ("bert", "gru")


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """One real run shared by the tests of this module."""
    d = tmp_path_factory.mktemp("apply")
    spec = d / "tiny.toml"
    spec.write_text(TINY_SPEC.format(size=SIZE, epochs=EPOCHS))
    store = d / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store, "--plugins", REPO / "plugins")
    assert code == 0, err + out
    return spec, store, out, err


def count(store: Store, sql: str, params=None) -> int:
    return store.query(sql, params)[1][0][0]


def test_row_counts_match_members_epochs_examples(applied):
    spec, store_path, out, _ = applied
    store = Store(store_path)
    run = store.query_dicts("SELECT * FROM runs")
    assert len(run) == 1 and run[0]["status"] == "finished"
    members = store.query_dicts("SELECT member, status, seed FROM members ORDER BY member")
    assert [(m["member"], m["status"]) for m in members] == [("bert", "finished"), ("gru", "finished")]
    assert [m["seed"] for m in members] == [3, 4]  # the spec seed + the member index

    splits = dict(store.query("SELECT split, count(*) FROM examples GROUP BY split")[1])
    assert sum(splits.values()) == SIZE
    n_valid, n_test = splits["valid"], splits["test"]
    assert n_valid == pytest.approx(0.2 * SIZE, abs=4) and n_test == pytest.approx(0.2 * SIZE, abs=4)

    epochs = count(store, "SELECT count(*) FROM epochs")
    assert epochs == len(MEMBERS) * EPOCHS
    # train loss + (loss and every registered metric) on valid and on test, per member and epoch
    metrics = load_registry(REPO / "plugins").names("metrics")
    assert {"accuracy", "f1_macro", "log_loss", "balanced_accuracy"} <= set(metrics)
    per_epoch = 1 + 2 * (1 + len(metrics))
    assert count(store, "SELECT count(*) FROM metrics WHERE checkpoint LIKE 'epoch-%'") == len(MEMBERS) * EPOCHS * per_epoch
    assert count(store, "SELECT count(*) FROM predictions WHERE checkpoint LIKE 'epoch-%'") == (
        len(MEMBERS) * EPOCHS * (n_valid + n_test)
    )
    # every example of each split has exactly one prediction per member and epoch
    dupes = count(store, "SELECT count(*) FROM (SELECT member, epoch, split, idx, count(*) c FROM predictions "
                         "WHERE checkpoint LIKE 'epoch-%' GROUP BY ALL HAVING c <> 1)")
    assert dupes == 0
    probs_ok = count(store, "SELECT count(*) FROM predictions WHERE abs(list_sum(probs) - 1) > 1e-4 "
                            "OR len(probs) <> 4 OR pred <> list_position(probs, list_max(probs)) - 1")
    assert probs_ok == 0
    assert "tiny-" in out and "bert" in out  # the end-of-run table


def test_runs_lists_the_run(applied):
    _, store_path, _, _ = applied
    code, out, err = cli("runs", "--store", store_path, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 1
    assert rows[0]["status"] == "finished" and rows[0]["members"] == "2/2" and rows[0]["run_id"].startswith("tiny-")
    assert rows[0]["metric"] == "eval_accuracy" and rows[0]["ensemble"] is not None  # the name is in --long
    code, out, err = cli("runs", "--store", store_path)
    assert code == 0 and rows[0]["run_id"] in out


def test_plot_writes_a_png(applied, tmp_path):
    _, store_path, _, _ = applied
    out = tmp_path / "curves.png"
    code, _, err = cli("plot", "--store", store_path, "--out", out)
    assert code == 0, err
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def assert_stored_accuracy_matches_the_metrics(store: Store) -> int:
    """Accuracy recomputed from every stored epoch prediction and its example's label equals the stored
    eval_/test_accuracy of that epoch; returns how many (member, epoch, split) groups were checked."""
    rows = store.query_dicts(
        """
        SELECT p.member, p.epoch, p.split, avg((p.pred = e.label)::INT) AS acc
        FROM predictions p JOIN runs r USING (run_id)
        JOIN examples e ON e.dataset_id = r.dataset_id AND e.split = p.split AND e.idx = p.idx
        WHERE p.checkpoint LIKE 'epoch-%' GROUP BY ALL
        """
    )
    epochs = {(r["member"], r["epoch"]): r for r in store.query_dicts("SELECT * FROM epochs")}
    for r in rows:
        key = "eval_accuracy" if r["split"] == "valid" else "test_accuracy"
        assert epochs[(r["member"], r["epoch"])][key] == pytest.approx(r["acc"], abs=1e-9)
    return len(rows)


def test_stored_metrics_agree_with_stored_predictions(applied):
    _, store_path, _, _ = applied
    assert assert_stored_accuracy_matches_the_metrics(Store(store_path)) > 0


def test_selections_agree_with_epoch_metrics(applied):
    _, store_path, _, _ = applied
    store = Store(store_path)
    epochs = store.query_dicts("SELECT * FROM epochs ORDER BY member, epoch")
    selections = {(s["member"], s["strategy"]): s["epoch"] for s in store.query_dicts("SELECT * FROM selections")}
    for member in MEMBERS:
        mine = [e for e in epochs if e["member"] == member]
        first_best = lambda key, sign: min(mine, key=lambda e: (sign * e[key], e["epoch"]))["epoch"]  # noqa: E731
        assert selections[(member, "last")] == max(e["epoch"] for e in mine)
        assert selections[(member, "best_eval_loss")] == first_best("eval_loss", 1)
        assert selections[(member, "best_eval_accuracy")] == first_best("eval_accuracy", -1)
        assert selections[(member, "best_eval_f1_macro")] == first_best("eval_f1_macro", -1)
        selected = store.query_dicts("SELECT selected_checkpoint FROM members WHERE member = ?", [member])[0]
        assert selected["selected_checkpoint"] == f"epoch-{selections[(member, 'best_eval_accuracy')]}"


@pytest.mark.parametrize("member", MEMBERS)
def test_selected_checkpoint_reloads_and_reproduces_stored_probabilities(applied, member):
    _, store_path, _, _ = applied
    store = Store(store_path)
    run_id = store.query("SELECT run_id FROM runs")[1][0][0]
    ckpt = store_path.parent / "runs" / run_id / member / "selected"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "runner.json").is_file()
    assert not list(ckpt.glob("*.bin")) and not list(ckpt.glob("*.pt"))
    model, tokenizer, info = load_checkpoint(ckpt, load_registry(REPO / "plugins"))
    epoch = json.loads((ckpt / "selection.json").read_text())["epoch"]
    rows = store.query_dicts(
        """
        SELECT e.text, p.probs FROM predictions p JOIN runs r USING (run_id)
        JOIN examples e ON e.dataset_id = r.dataset_id AND e.split = p.split AND e.idx = p.idx
        WHERE p.member = ? AND p.epoch = ? AND p.split = 'valid' AND p.checkpoint = 'epoch-' || p.epoch
        ORDER BY p.idx LIMIT 40
        """,
        [member, epoch],
    )
    enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=info["max_length"], padding=True,
                    return_tensors="pt")
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits, -1).numpy()
    np.testing.assert_allclose(probs, np.array([r["probs"] for r in rows]), atol=1e-4)


def test_reapply_does_nothing_and_broken_spec_leaves_store_untouched(applied, tmp_path):
    spec, store_path, _, _ = applied
    before = file_digest(store_path)
    code, out, err = cli("apply", spec, "--store", store_path, "--plugins", REPO / "plugins")
    assert code == 0
    assert "nothing to do" in err
    assert file_digest(store_path) == before

    broken = tmp_path / "broken.toml"
    broken.write_text(TINY_SPEC.format(size=SIZE, epochs=EPOCHS).replace("heads = 2", "heads = 2, hiden = 3"))
    code, out, err = cli("apply", broken, "--store", store_path, "--plugins", REPO / "plugins")
    assert code == 2
    assert "broken.toml: members[0].options.hiden: unknown key" in err
    assert "Traceback" not in err + out
    assert file_digest(store_path) == before


def test_a_plugin_checkpoint_names_its_plugin_and_reloads_from_its_folder(applied):
    """runner.json records the plugin that built the member; without it loaded, the error says which
    file to load, and `plugins_dir=` loads it the way `apply` did (a checkpoint never makes runner
    run a Python file by itself)."""
    from runner.errors import InputError

    _, store_path, _, _ = applied
    run_id = Store(store_path).query("SELECT run_id FROM runs")[1][0][0]
    ckpt = store_path.parent / "runs" / run_id / "gru" / "selected"
    info = json.loads((ckpt / "runner.json").read_text())
    assert info["backbone"] == "gru" and info["origin"] == str(REPO / "plugins" / "gru_encoder.py")
    with pytest.raises(InputError, match=r"gru_encoder\.py.*plugins_dir="):
        load_checkpoint(ckpt)
    model, _, _ = load_checkpoint(ckpt, plugins_dir=REPO / "plugins")
    assert type(model).__name__ == "GRUClassifier"


def test_group_by_length_and_compile_reach_trainer(tmp_path):
    """`[train] group_by_length` is Trainer's length-grouped sampler and `compile` its torch_compile;
    off, neither appears in the stored spec, so specs stored before them keep their hash."""
    import tempfile

    from transformers.trainer_pt_utils import LengthGroupedSampler

    from runner.run.plan import plan
    from runner.train.arguments import training_arguments
    from runner.train.build import make_trainer, prepare_member

    spec = tmp_path / "spec.toml"
    spec.write_text(TINY_SPEC.format(size=80, epochs=1))
    plain = plan(spec, REPO / "plugins")
    assert "group_by_length" not in plain.resolved.to_dict()["train"]
    p = plan(spec, REPO / "plugins", overrides=(("train.group_by_length", True), ("train.compile", True)))
    assert p.spec_hash != plain.spec_hash and p.resolved.to_dict()["members"][0]["train"]["group_by_length"]
    m = p.resolved.members[0]
    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(m, p.resolved, Path(out))
        assert args.train_sampling_strategy == "group_by_length" and args.torch_compile
        trainer = make_trainer(m, p.resolved, prepare_member(m, p.resolved, p.data, p.registry), Path(out), [])
        assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)
        q = plain.resolved.members[0]
        assert not training_arguments(q, plain.resolved, Path(out)).torch_compile
        assert not isinstance(make_trainer(q, plain.resolved, prepare_member(q, plain.resolved, plain.data,
                                                                              plain.registry), Path(out),
                                           [])._get_train_sampler(), LengthGroupedSampler)


def test_group_by_length_stores_every_probability_against_its_own_example(tmp_path):
    """Trainer 5 evaluates through a shuffled length-grouped sampler when training groups by length;
    runner keeps evaluation in order, so accuracy recomputed from the stored rows equals the metric."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.format(size=SIZE, epochs=2).replace(
        'lr_scheduler = "constant"', 'lr_scheduler = "constant"\ngroup_by_length = true'))
    store_path = tmp_path / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store_path, "--plugins", REPO / "plugins")
    assert code == 0, err + out
    assert assert_stored_accuracy_matches_the_metrics(Store(store_path)) == 2 * 2 * 2  # members x epochs x splits


def test_a_micro_batch_counts_by_its_share_of_the_optimizer_step(tmp_path):
    """Trainer takes a compute_loss_func's value as normalised over the whole step (all gradient-
    accumulation micro-batches, all DDP ranks): runner weights each batch's mean by its share, so a
    step of 2 x 16 trains on and reports the same loss as one of 32 (not twice it)."""
    from runner.run.plan import plan
    from runner.train.build import prepare_member

    spec = tmp_path / "spec.toml"
    spec.write_text(TINY_SPEC.format(size=80, epochs=1))
    p = plan(spec, REPO / "plugins")
    m = p.resolved.members[0]
    loss = prepare_member(m, p.resolved, p.data, p.registry).compute_loss
    torch.manual_seed(0)
    out = type("Out", (), {"logits": torch.randn(8, 4)})()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    mean = loss(out, labels)
    assert torch.equal(loss(out, labels, num_items_in_batch=torch.tensor(8)), mean)  # one batch: bit for bit
    assert torch.allclose(loss(out, labels, num_items_in_batch=torch.tensor(32)), mean / 4)

    losses = {}
    for batch, accumulate in ((32, 1), (16, 2)):
        d = tmp_path / f"b{batch}"
        d.mkdir()
        s = d / "spec.toml"
        s.write_text(TINY_SPEC.format(size=SIZE, epochs=1).replace("batch_size = 32", f"batch_size = {batch}\n"
                                                                   f"gradient_accumulation_steps = {accumulate}"))
        code, _, err = cli("apply", s, "--store", d / "results.duckdb", "--plugins", REPO / "plugins")
        assert code == 0, err
        losses[accumulate] = dict(Store(d / "results.duckdb").query("SELECT member, train_loss FROM epochs")[1])
    for member, value in losses[1].items():
        assert 0.85 < losses[2][member] / value < 1.15, (member, losses)
