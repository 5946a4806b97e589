"""What a person reads of a run: `runner report`'s page, `--format markdown`, and `runner plot`'s legends.

One real run (two tiny scratch members, 3 epochs, SWA over the last 2, fitted ensemble weights) and a
calibration of it, made once for the module. The page is parsed with the standard library's
html.parser and its numbers are checked against the store's own rows (metrics, members, ensemble
weights, calibrations); it references nothing outside itself and its images are real PNGs. With
Chromium installed (`scripts/setup.sh --browser`; CI installs it), the page is also loaded headless at
a phone's and a desktop's width, and must render without a console error. The markdown tables are
checked cell by cell against the terminal table. The plot's legends never cover a line or a bar.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess

import pytest
from html_page import Page, column
from typer.testing import CliRunner

from runner.cli import app
from runner.store import Store

SPEC = """
name = "rep"
seed = 3

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 32

[data.options]
size = 500

[train]
epochs = 3
batch_size = 8
learning_rate = 3e-3
lr_scheduler = "constant"

[loss]
name = "cross_entropy"

[swa]
k = 2

[ensemble]
weights = "fit"

[[members]]
name = "a"
backbone = "scratch"
seed = 1
options = { architecture = "bert", hidden_size = 32, layers = 1, heads = 2, intermediate_size = 64, vocab_size = 300 }

[[members]]
name = "b"
backbone = "scratch"
seed = 2
options = { architecture = "roberta", hidden_size = 32, layers = 1, heads = 2, intermediate_size = 64, vocab_size = 300 }
"""
STRATEGIES = "best_eval_accuracy,swa,last"


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(folder, store, run_id): a finished, calibrated run."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "spec.toml").write_text(SPEC)
    store = folder / "results.duckdb"
    code, out, err = cli("apply", folder / "spec.toml", "--store", store)
    assert code == 0, err + out
    code, out, err = cli("calibrate", "--store", store)
    assert code == 0, err + out
    (run_id,), = Store(store).query("SELECT run_id FROM runs")[1]
    return folder, store, run_id


# -- the page, parsed -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(run):
    folder, store, run_id = run
    out = folder / "report.html"
    code, _, err = cli("report", "--store", store, "--out", out)
    assert code == 0, err
    assert f"wrote {out}" in err
    return Page(out.read_text(encoding="utf-8")), out


def strategy_rows(t: dict):
    """(strategies of the block, member, ep, row) of each member or ensemble row of compare's table: a
    block starts with a row naming its strategies (`a (spec) = b`), its rows are indented below it."""
    names = []
    for row in t["rows"]:
        first = row[0][0]
        if not first.startswith(" "):
            names = [n.removesuffix(" (spec)") for n in first.split(" = ")]
            continue
        yield names, first.strip(), row[1][0], row


def test_the_strategy_table_holds_the_stored_numbers_and_marks_each_best(run, page):
    folder, store, run_id = run
    p, _ = page
    st = Store(store)
    spec_strategy = st.run(run_id).selected_strategy
    metrics = {(k, m, c, s, n): v for k, m, c, s, n, v in st.query(
        "SELECT kind, member, checkpoint, split, name, value FROM metrics WHERE run_id = ?", [run_id])[1]}
    picks = {(s, m): c for m, s, c in st.query("SELECT member, strategy, checkpoint FROM selections WHERE run_id = ?",
                                               [run_id])[1]}
    t = p.table(f"Run {run_id}: selection strategies")
    assert t["headers"][:7] == ["strategy   member", "ep", "eval acc", "test acc", "test F1", "test log loss", "tvd"]
    shown = [names for names, *_ in strategy_rows(t)]
    assert {n for names in shown for n in names} == {spec_strategy, "swa", "last", "best_eval_loss"}  # the default
    checked = 0
    for name, split, col in (("accuracy", "valid", 2), ("accuracy", "test", 3), ("log_loss", "test", 5)):
        values = []
        for names, member, epoch, row in strategy_rows(t):
            cell, classes = row[col]
            values.append((float(cell), "best" in classes))
            if member == "ensemble":
                if spec_strategy in names:  # apply's ensemble: stored (the others are computed, not stored)
                    assert cell == f"{metrics[('ensemble', 'ensemble', spec_strategy, split, name)]:.4f}"
                    checked += 1
                continue
            checkpoint = "swa" if epoch == "swa" else f"epoch-{epoch}"
            assert all(picks[(s, member)] == checkpoint for s in names), (names, member)  # one block: same picks
            assert cell == f"{metrics[('member', member, checkpoint, split, name)]:.4f}", (names, member, name)
            checked += 1
        best = (min if name == "log_loss" else max)(v for v, _ in values)
        assert [marked for _, marked in values] == [v == best for v, _ in values], name
    assert checked >= 3 * 3 * 2


def test_members_status_weights_swa_and_calibration_match_the_store(run, page):
    folder, store, run_id = run
    p, _ = page
    st = Store(store)
    members = p.table(f"Run {run_id} (finished)")
    status = {r[column(members, "member")][0]: r[column(members, "status")][0] for r in members["rows"]}
    assert status == dict(st.query("SELECT member, status FROM members WHERE run_id = ?", [run_id])[1])

    weights = p.table("Ensemble weights")
    stored = st.query("SELECT strategy, member, member_checkpoint, weight FROM ensemble_weights "
                      "WHERE run_id = ? AND ensemble = 'ensemble'", [run_id])[1]
    shown, strategy = {}, None
    for row in weights["rows"]:
        strategy = row[column(weights, "strategy")][0] or strategy
        shown[(strategy, row[column(weights, "member")][0])] = (row[column(weights, "checkpoint")][0],
                                                                row[column(weights, "weight")][0])
    assert shown == {(s, m): (c, f"{w:.4f}") for s, m, c, w in stored}
    assert {s for s, _ in shown} == {st.run(run_id).selected_strategy}  # apply's ensemble: the report stored none

    swa = p.table("SWA:")
    for row in swa["rows"]:
        member = row[0][0]
        value = st.query("SELECT value FROM metrics WHERE run_id = ? AND member = ? AND checkpoint = 'swa' "
                         "AND split = 'test' AND name = 'accuracy'", [run_id, member])[1][0][0]
        assert row[column(swa, "swa test accuracy")][0] == f"{value:.4f}"
        assert row[column(swa, "averaged epochs")][0] == "2, 3"

    cal = p.table(f"Run {run_id}: calibrations")
    temperatures = {(m, c): t for m, c, t in st.query(
        "SELECT member, checkpoint, temperature FROM calibrations WHERE run_id = ?", [run_id])[1]}
    rows = cal["rows"]
    assert len(rows) == 3 * len(temperatures)  # its name, before (stored) and after, for each calibrated checkpoint
    for name, before, after in zip(rows[::3], rows[1::3], rows[2::3]):
        member, checkpoint = name[0][0].split()
        assert before[0][0].strip() == "stored"
        assert " ".join(after[0][0].split()) == f"temperature T {temperatures[(member, checkpoint)]:.3f}"


def test_the_page_is_self_contained_and_its_images_are_pngs(page):
    from PIL import Image

    p, out = page
    assert p.meta["viewport"].startswith("width=device-width") and p.meta["generator"] == "runner report"
    assert not p.tags & {"script", "link", "iframe", "object", "embed", "base"}
    external = [u for u in p.urls if not u[2].startswith("data:")]
    assert not external, external
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "@import" not in text and "url(" not in text and "@media print" in text
    assert len(p.images) == 5  # loss, accuracy, macro-F1, class shares, confusion matrix
    for src in p.images:
        head, data = src.split(",", 1)
        assert head == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            im.verify()
            assert im.format == "PNG" and im.size[0] > 400
    spec = json.loads(html.unescape(re.search(r"<pre>(.*?)</pre>", text, re.S).group(1)))
    assert spec["name"] == "rep" and [m["name"] for m in spec["members"]] == ["a", "b"]


def test_report_never_overwrites_a_file_it_did_not_write(run, page, tmp_path):
    folder, store, run_id = run
    _, earlier = page
    mine = tmp_path / "notes.html"
    mine.write_text("<html><body>my notes</body></html>")
    for target in (mine, store, folder / "spec.toml"):
        before = target.read_bytes()
        code, _, err = cli("report", "--store", store, "--out", target)
        assert code == 2 and str(target) in err, err
        assert target.read_bytes() == before
    for bad in (tmp_path / "missing" / "r.html", tmp_path / "r.txt", tmp_path):
        code, _, err = cli("report", "--store", store, "--out", bad)
        assert code == 2 and "--out" in err, err
        assert not (tmp_path / "missing").exists() and not (tmp_path / "r.txt").exists()
    code, _, err = cli("report", "--store", store, "--out", earlier)  # an earlier report is replaced
    assert code == 0, err
    code, _, err = cli("report", "nope", "--store", store, "--out", tmp_path / "n.html")
    assert code == 2 and "nope" in err and not (tmp_path / "n.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                    reason="no Chromium here (scripts/setup.sh --browser installs it; CI always does)")
def test_the_page_renders_in_a_headless_browser_at_phone_and_desktop_width(page, tmp_path):
    """Chromium loads the file with no network at all; every console message is logged to stderr, and an
    error or a failed load among them fails the test. The screenshots show the phone layout (390 px)
    and the desktop one; the DOM it built must hold every table and image of the page."""
    assert CHROMIUM is not None, "CI installs chromium (scripts/setup.sh --browser); it is missing"
    p, out = page
    for width in (390, 1280):
        shot = tmp_path / f"shot-{width}.png"
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={tmp_path / f'profile-{width}'}", "--enable-logging=stderr", "--v=0",
                "--hide-scrollbars", f"--window-size={width},2000", f"--screenshot={shot}", out.as_uri()]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Failed to load" in line
                   or "net::ERR" in line]
        assert done.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, done.stderr[-2000:]
        assert not console, console
        from PIL import Image, ImageStat

        with Image.open(shot) as im:  # the viewport's width, and not blank
            assert im.size[0] == width and max(ImageStat.Stat(im.convert("L")).stddev) > 20
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", out.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    rendered = Page(dom)
    assert len(rendered.tables) == len(p.tables) and len(rendered.images) == len(p.images)


# -- markdown ---------------------------------------------------------------------------------------


def markdown_rows(text: str) -> list[list[str]]:
    """The rows of the first GFM table in `text` (header and alignment rows included), as cell texts."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    rows = []
    for line in lines:
        assert line.endswith(" |"), line
        cells = re.split(r"(?<!\\) \| ", line[2:-2])
        rows.append([c.strip() for c in cells])
    return rows


def test_compare_markdown_has_the_table_formats_cells(run):
    folder, store, run_id = run
    code, md, err = cli("compare", "--store", store, "--strategies", STRATEGIES, "--format", "markdown")
    assert code == 0, err
    code, table, _ = cli("compare", "--store", store, "--strategies", STRATEGIES)
    code, js, _ = cli("compare", "--store", store, "--strategies", STRATEGIES, "--format", "json")
    records = [r for r in json.loads(js) if not r["strategy"].startswith("refit:")]
    blocks = md.split("\n\n")
    assert blocks[0] == f"**Run {run_id}: selection strategies (test)**"
    rows = markdown_rows(blocks[1])
    header, align, body = rows[0], rows[1], rows[2:]
    assert header[:7] == ["strategy member", "ep", "eval acc", "test acc", "test F1", "test log loss", "tvd"]
    assert header[7:] == ["strong negative 30.0%", "weak negative 12.0%", "weak positive 25.0%",
                          "strong positive 33.0%"]
    assert align == ["---"] + ["---:"] * 10
    assert all(len(r) == len(header) for r in body)
    labels = [r[0] for r in body if all(c == "" for c in r[1:])]  # a block's strategies, then its rows
    assert {n.removesuffix(" (spec)") for label in labels for n in label.strip("*").split(" = ")} == set(
        STRATEGIES.split(","))
    assert len(body) == len(labels) + 3 * len(labels)  # two members and the ensemble per block
    # the terminal's rows, cell for cell: each markdown row is a line of the table, its cells in order
    lines = [line.split() for line in table.splitlines()]
    for r in body:
        words = " ".join(c.strip("*") for c in r if c).split()
        assert words in lines, (r, table)
    by_row = {(rec["strategy"], rec["member"]): rec for rec in records}
    names = []
    for r in body:
        if all(c == "" for c in r[1:]):
            names = [n.removesuffix(" (spec)") for n in r[0].strip("*").split(" = ")]
            continue
        for col, key in (("eval acc", "eval_accuracy"), ("test acc", "test_accuracy"),
                         ("test log loss", "test_log_loss")):
            cell = r[header.index(col)]
            best = (min if key.endswith("loss") else max)(x[key] for x in records)
            for name in names:  # every strategy of the block has these numbers
                assert cell.strip("*") == f"{by_row[(name, r[0])][key]:.4f}", (name, r[0], col)
            assert cell.startswith("**") == (by_row[(names[0], r[0])][key] == best), (col, cell)


def test_sql_markdown_is_the_exact_pipe_table(run):
    folder, store, _ = run
    query = "SELECT 1 AS n, 'a|b <c>' AS text, 0.123456::DOUBLE AS x, NULL AS empty UNION ALL SELECT 20, 'd', 2, NULL"
    code, md, err = cli("sql", query, "--store", store, "--format", "markdown")
    assert code == 0, err
    assert md == ("| n | text | x | empty |\n"
                  "| ---: | --- | ---: | --- |\n"
                  "| 1 | a\\|b &lt;c> | 0.1235 |  |\n"
                  "| 20 | d | 2.0000 |  |\n")
    code, table, _ = cli("sql", query, "--store", store)
    for number in ("0.1235", "2.0000", "20"):
        assert number in table


# -- the plot's legends -----------------------------------------------------------------------------


def test_no_legend_of_the_run_plot_covers_a_line_or_a_bar(run, tmp_path):
    import matplotlib.pyplot as plt

    from runner.analysis.plot import figure, load_run

    folder, store, run_id = run
    st = Store(store).open_read()
    fig = figure(load_run(st, st.run(run_id)))
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert len(legends) == 4
        data = [(ax, a) for ax in fig.axes for a in [*ax.lines, *ax.patches] if a.get_visible()]
        assert sum(1 for _, a in data if hasattr(a, "get_height")) >= 4 * 6  # the bars: 4 classes x 6 series
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), f"a legend covers {ax.get_title()!r}"
            for ax, artist in data:
                extent = artist.get_window_extent(renderer)
                assert not box.overlaps(extent), f"a legend covers {artist} of {ax.get_title()!r}"
    finally:
        plt.close(fig)
    code, _, err = cli("plot", "--store", store, "--out", tmp_path / "p.png")
    assert code == 0 and (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", err
