"""The docs show working code: the site builds in strict mode, docs/plugins.md quotes the files in
plugins/ exactly, every hook in runner.plugins.hookspecs is documented there, and the output blocks of
README.md and docs/ match a fresh quickstart run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import runner.plugins.hookspecs as hookspecs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import readme_outputs as outputs  # noqa: E402  (scripts/readme_outputs.py: the output-block check)

DOC = (REPO / "docs" / "plugins.md").read_text()
BLOCKS = dict(re.findall(r'```python title="([^"]+)"\n(.*?)```', DOC, flags=re.S))


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "plugins").glob("*.py")))
def test_plugin_file_is_quoted_whole_in_the_docs(path):
    assert path in BLOCKS, f"docs/plugins.md does not show {path}"
    assert BLOCKS[path] == (REPO / path).read_text()


@pytest.mark.parametrize("hook", [n for n in dir(hookspecs) if n.startswith(("register_", "on_"))])
def test_every_hook_is_documented(hook):
    assert f"`{hook}(" in DOC


def test_the_site_builds_in_strict_mode(tmp_path):
    """`mkdocs build --strict`, as .ci/run builds it: every page in the nav exists, every link and
    anchor resolves, and the reference pages generate from the code (scripts/docs_reference.py)."""
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs, mkdocs-material) is not installed")
    pytest.importorskip("material", reason="the docs extra (mkdocs, mkdocs-material) is not installed")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # no banner
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "runner apply" in cli and "--no-check-models" in cli and "<!-- generated:" not in cli
    store = (tmp_path / "site" / "reference" / "store" / "index.html").read_text(encoding="utf-8")
    assert "selected_checkpoint" in store and "confusion" in store


def test_readme_outputs_match_a_fresh_quickstart_run(tmp_path):
    """The quickstart, as a user runs it: `runner apply specs/quickstart.toml` in a fresh folder, then
    every command and query whose output README.md and the docs pages show (scripts/readme_outputs.py),
    each number within its kind's tolerance (the machine's float kernels may round differently). The
    generated blocks are kept, and the same check on them fails for an accuracy moved by 0.02."""
    import json

    dump = tmp_path / "generated.json"
    # about 8 minutes on an idle 2-core machine; over 25 beside another suite on the same cores
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "readme_outputs.py"), "--check", "--dump",
                           str(dump)], capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    generated = json.loads(dump.read_text(encoding="utf-8"))["blocks"]
    assert all(outputs.stale_blocks(page.read_text(encoding="utf-8"), generated) == []
               for page in outputs.default_pages())
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"test_accuracy (0\.\d{4})", readme).group(1)  # the apply block's ensemble
    changed = readme.replace(f"test_accuracy {shown}", f"test_accuracy {float(shown) + 0.02:.4f}", 1)
    assert changed != readme and outputs.stale_blocks(changed, generated) == ["apply"]


def test_the_contributor_map_names_real_files_and_every_layer():
    """docs/contributing.md: every file it names exists, and its layer diagram names every subpackage
    and top-level module of src/runner, in the order of the import-linter contract."""
    import tomllib

    doc = (REPO / "docs" / "contributing.md").read_text()
    src = REPO / "src" / "runner"
    for name in set(re.findall(r"`([\w/]+\.(?:py|toml|md))`", doc)):
        assert (src / name).exists() or (REPO / name).exists() or (REPO / "docs" / name).exists(), \
            f"docs/contributing.md names {name}, which does not exist"
    layers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    diagram = re.search(r"## The rule.*?```\n(.*?)```", doc, re.S).group(1)
    drawn = [line.split("  ")[0].strip() for line in diagram.splitlines() if line.strip()]
    assert [d.replace(" ", "") for d in drawn] == [layer.replace(" ", "") for layer in layers]
    packages = {p.name for p in src.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in src.glob("*.py") if not p.name.startswith("__")}
    named = {n.strip() for layer in layers for n in layer.split("|")}
    assert packages | modules <= named | {"_moved"} | {"hf"}, sorted((packages | modules) - named)


def test_the_alpha_spec_is_the_quickstart_but_for_its_name_and_alpha():
    """README's calibration section compares specs/quickstart_alpha.toml with the quickstart."""
    import tomllib

    quick = tomllib.loads((REPO / "specs" / "quickstart.toml").read_text())
    alpha = tomllib.loads((REPO / "specs" / "quickstart_alpha.toml").read_text())
    assert (alpha.pop("name"), alpha["loss"].pop("alpha")) == ("quickstart-alpha", "inverse_frequency")
    quick.pop("name")
    quick["loss"].pop("alpha")
    assert alpha == quick


def test_the_example_reviews_are_the_generator_s_with_seed_2026():
    """examples/new_reviews.csv (README's `runner predict` example): 300 synthetic reviews the
    quickstart never saw, as runner.data.synthetic.generate(300, seed=2026) makes them."""
    import csv

    from runner.data import synthetic

    texts, labels = synthetic.generate(300, seed=2026)
    with open(REPO / "examples" / "new_reviews.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == [synthetic.LABEL_NAMES[i] for i in labels]
    quickstart_texts = set(synthetic.generate(3000, seed=13)[0])
    assert not set(texts) & quickstart_texts  # the quickstart (seed 13) never saw one of them


def test_the_sweep_spec_is_the_quickstart_but_for_its_name_and_sweep():
    """README's Sweeps section searches around the quickstart itself."""
    import tomllib

    quick = tomllib.loads((REPO / "specs" / "quickstart.toml").read_text())
    sweep = tomllib.loads((REPO / "specs" / "sweep_quickstart.toml").read_text())
    assert sweep.pop("name") == "quickstart-sweep" and set(sweep.pop("sweep")["space"]) == {
        "loss.gamma", "loss.label_smoothing", "loss.alpha[1]"}
    quick.pop("name")
    assert sweep == quick


def test_the_adapt_spec_is_the_quickstart_but_for_its_name_and_adapt():
    """README's [adapt] section compares specs/quickstart_adapt.toml with the quickstart: they differ
    only in [adapt], so `runner compare quickstart quickstart-adapt` measures adaptation alone."""
    import tomllib

    quick = tomllib.loads((REPO / "specs" / "quickstart.toml").read_text())
    adapt = tomllib.loads((REPO / "specs" / "quickstart_adapt.toml").read_text())
    assert adapt.pop("name") == "quickstart-adapt" and adapt.pop("adapt")["extra"] == [
        "../examples/unlabeled_reviews.txt"]
    quick.pop("name")
    assert adapt == quick


def test_the_unlabeled_reviews_are_the_generator_s_with_seed_2027_and_unseen():
    """examples/unlabeled_reviews.txt ([adapt] extra of the quickstart): the first 5,000 of
    runner.data.synthetic.generate(6000, seed=2027) that the quickstart's 3,000 reviews (seed 13) do not
    hold, one per line: no test text of the quickstart is among them."""
    from runner.data import synthetic

    lines = (REPO / "examples" / "unlabeled_reviews.txt").read_text(encoding="utf-8").splitlines()
    quickstart_texts = set(synthetic.generate(3000, seed=13)[0])
    expected = [t for t in synthetic.generate(6000, seed=2027)[0] if t not in quickstart_texts][:5000]
    assert lines == expected and not set(lines) & quickstart_texts


def test_the_own_data_spec_reads_the_example_csv_and_names_a_local_hf_model(tmp_path):
    """specs/own_data.toml (the tutorial's second part): a csv of the user's own, an `hf` model by
    local path. Validated without the model folder (`--no-check-models`: the tutorial's two commands
    fetch it), by the real command in a subprocess; the store it names is not created."""
    import csv
    import tomllib

    spec = tomllib.loads((REPO / "specs" / "own_data.toml").read_text())
    assert spec["data"]["source"] == "csv" and [m["backbone"] for m in spec["members"]] == ["hf"]
    assert not spec["members"][0]["model"].startswith(("http", "sentence-transformers/"))  # a folder, no Hub id
    with open(REPO / "specs" / spec["data"]["train"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["label"] for r in rows} == {"negative", "mixed", "positive"} and len(rows) == 60
    store = tmp_path / "results.duckdb"
    proc = subprocess.run([sys.executable, "-m", "runner", "validate", "specs/own_data.toml", "--no-check-models",
                           "--store", str(store)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "train 36, valid 12, test 12" in proc.stdout and "minilm (hf, " in proc.stdout, proc.stdout
    assert "mixed 33.3%, negative 33.3%, positive 33.3%" in proc.stdout
    assert not store.exists()
