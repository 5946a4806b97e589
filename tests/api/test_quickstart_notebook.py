"""examples/quickstart.ipynb (about a minute on a 2-core CPU), executed in a real Jupyter kernel (nbclient, ipykernel): it trains the
quickstart (small, through `set=`) with `runner.apply` and answers the loss-vs-accuracy question with
`runner.open`; its tables are the store's numbers, and the kernel writes nothing under $HOME."""

from __future__ import annotations

import shutil

import runner


def test_the_quickstart_notebook_runs_in_a_kernel(repo, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    examples = tmp_path / "examples"
    examples.mkdir()
    (tmp_path / "specs").mkdir()
    shutil.copy(repo / "specs" / "quickstart.toml", tmp_path / "specs")
    nb = nbformat.read(repo / "examples" / "quickstart.ipynb", as_version=4)
    home = tmp_path / "home"
    home.mkdir()
    # the kernel (and Jupyter around it) write their config, runtime files and history here, not in $HOME
    monkeypatch.setenv("HOME", str(home))
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        (tmp_path / "jupyter" / name.lower()).mkdir(parents=True)
        monkeypatch.setenv(name, str(tmp_path / "jupyter" / name.lower()))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(examples)}}).execute()

    def text(i: int) -> str:
        return "".join(o.get("data", {}).get("text/plain", "") for o in nb.cells[i].outputs)

    view = runner.open(examples / "results.duckdb")
    runs = view.runs()
    assert list(runs["name"]) == ["quickstart"] and runs["members_finished"].tolist() == [3]
    run_id = runs["run_id"].iloc[0]
    assert run_id in text(1) and "finished" in text(1)
    # the loss-vs-accuracy table the notebook shows is the one the store gives
    table = view.compare(run_id, strategies=["best_eval_loss", "best_eval_accuracy"])
    test = table.pivot_table(index="member", columns="strategy", values="test_accuracy")
    test["loss minus accuracy"] = test["best_eval_loss"] - test["best_eval_accuracy"]
    assert text(6) == repr(test)
    assert "weak_negative" in text(8)
    assert not list(home.rglob("*"))
