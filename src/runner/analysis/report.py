"""`runner report`: one self-contained HTML page of a run (or a sweep), to hand to a colleague.

Nothing on the page is fetched: the style sheet is inline, every plot is a PNG embedded as base64,
there is no script and no web font. It is built from what the other commands show, not recomputed:
the plots come first and are `runner plot`'s panels (runner.analysis.plot, runner.analysis.sweep_plot), the
members table is the end-of-run table (runner.analysis.summary), the strategies table is `runner compare`'s
default (runner.analysis.compare, with its refit blocks and calibrations' before/after table), the per-class
tables `runner compare --classes`' of the spec's strategy (runner.analysis.classes), a sweep's tables are
`runner sweep`'s (runner.analysis.sweep_view); runner.analysis.tables turns those rich tables into HTML, cell
for cell. Like `runner compare`, building the page writes nothing to the store: ensembles that `apply` did
not store are computed in memory.

The page reads on a phone (wide tables scroll sideways, images shrink to the width) and prints (the
tables wrap, nothing scrolls, landscape pages). The `generator` meta tag marks a file as a report:
`--out` replaces only such a file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from rich.table import Table

from runner.analysis import classes, compare, plot, sweep_plot, sweep_view
from runner.analysis.environment import environment_section
from runner.analysis.summary import summary_table
from runner.analysis.tables import table as new_table
from runner.analysis.tables import to_html
from runner.analysis.tokens import tokens_table
from runner.core.records import RunRecord
from runner.errors import InputError
from runner.store import Store
from runner.version import __version__

GENERATOR = "runner report"
_MARK = f'<meta name="generator" content="{GENERATOR}">'

CSS = """
:root { color-scheme: light; --line: #d0d4d9; --muted: #5b6470; --best: #0a7d32; --bad: #b3261e; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; margin: 0 auto;
       padding: 12px 16px 40px; max-width: 1280px; }
h1 { font-size: 1.5em; margin: 0.4em 0; overflow-wrap: anywhere; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; padding-bottom: 0.2em; border-bottom: 1px solid var(--line); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: 0.6em 0; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; font-variant-numeric: tabular-nums; }
p.title { font-weight: 600; margin: 1em 0 0; font-size: 0.9em; overflow-wrap: anywhere; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: left;
         vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; vertical-align: bottom; }
th.num, td.num { text-align: right; }
tbody + tbody { border-top: 2px solid #8a939c; }
tr.em td { font-style: italic; }
td.best { color: var(--best); font-weight: 700; }
td.bad { color: var(--bad); font-weight: 700; }
p.note, p.legend { color: var(--muted); font-size: 0.85em; margin: 0.2em 0 1em; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 8px; overflow: auto; max-height: 28em;
      font-size: 0.8em; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 480px), 1fr)); gap: 12px; }
figure { margin: 0; }
img { max-width: 100%; height: auto; display: block; }
footer { margin-top: 3em; color: var(--muted); font-size: 0.8em; }
@media (max-width: 600px) { body { font-size: 14px; padding: 8px; } th, td { padding: 2px 5px; } }
@media print {
  @page { size: A4 landscape; margin: 10mm; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  .scroll, pre { overflow: visible; max-height: none; }
  pre { white-space: pre-wrap; word-break: break-all; }
  th, td { white-space: normal; }
  table { font-size: 7.5pt; }
  h2 { break-after: avoid; }
  figure, tr, img { break-inside: avoid; }
  .plots { grid-template-columns: 1fr 1fr; }
}
"""


# -- the page ---------------------------------------------------------------------------------------


def build(store: Store, kind: str, record, registry) -> str:
    """The report of a run (`kind` "run", a RunRecord) or a sweep ("sweep", its `sweeps` row)."""
    if kind == "sweep":
        title, sections = f"Sweep {record['sweep_id']}", sweep_sections(store, record, registry)
    else:
        title, sections = f"Run {record.run_id}", run_sections(store, record, registry)
    return page(title, sections)


def page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f'<section id="{_anchor(h)}"><h2>{html.escape(h)}</h2>\n{content}\n</section>'
                     for h, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{_MARK}
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
{body}
<footer>runner {html.escape(__version__)} · built from the store alone; every number is in its tables</footer>
</body>
</html>
"""


def _anchor(heading: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in heading.lower()).strip("-")


def _facts(items: list[tuple[str, object]]) -> str:
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items if v not in (None, ""))
    return f'<dl class="facts">{rows}</dl>'


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


BEST_LEGEND = '<p class="legend">Bold green: the best value of its column (as `runner compare` shows it).</p>'


# -- a run ------------------------------------------------------------------------------------------


def run_sections(store: Store, run: RunRecord, registry) -> list[tuple[str, str]]:
    facts = [("name", run.name), ("status", run.status), ("started", _time(run.started_at)),
             ("finished", _time(run.finished_at)), ("dataset", run.dataset_id), ("spec hash", run.spec_hash[:16]),
             ("selection", f"{run.selection_metric} ({run.selected_strategy})"),
             ("labels", ", ".join(run.label_names)), ("refit of", run.parent_run_id),
             ("refit epochs by", run.refit_strategy), ("replicas", run.repeat_group), ("error", run.error)]
    sections = [("Run", _facts(facts)), ("Plots", plots(store, run, registry)),
                ("Members", to_html(summary_table(store, run)) + to_html(members_table(run)))]
    if run.finished:
        c = compare.compare(store, run, registry, compare.default_strategies(run, registry) or None)
        more = ('<p class="legend">The spec\'s strategy, swa, last and best_eval_loss; `runner compare --all` '
                'shows every strategy.</p>')
        sections.append(("Selection strategies", BEST_LEGEND + more + to_html(compare.render(c))))
        spec_rows = [r for r in c.rows if r["strategy"] == run.selected_strategy]
        reports = classes.class_reports(c.results, spec_rows, c.dist_split)
        if reports:
            sections.append(("Per class", to_html([classes.render(r, run.run_id, caption=r is reports[-1])
                                                   for r in reports])))
    tokens = tokens_table(store, run.run_id)
    if tokens is not None:
        sections.append(("Tokenizers", to_html(tokens)))
    swa = swa_table(store, run)
    weights = weights_table(store, run)
    if swa is not None or weights is not None:
        sections.append(("SWA and ensemble weights", to_html([t for t in (swa, weights) if t is not None])))
    sections.append(environment_section(store, run))
    sections.append(("Spec", f"<pre>{html.escape(json.dumps(run.spec, indent=2, ensure_ascii=False))}</pre>"))
    return sections


def _time(t) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t is not None else ""


def members_table(run: RunRecord) -> Table:
    table = new_table("Members: what each is")
    for col in ("member", "backbone", "model", "seed", "options", "error"):
        if col == "seed":
            table.add_column(col, justify="right", no_wrap=True)
        else:
            table.add_column(col, overflow="fold")
    for m in run.members:
        options = ", ".join(f"{k}={v}" for k, v in m.options.items())
        error = f"[red]{_escape_markup(m.error)}[/]" if m.error else ""
        table.add_row(m.name, m.backbone, _escape_markup(m.model or ""), str(m.seed), _escape_markup(options), error)
    return table


def _escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def swa_table(store: Store, run: RunRecord) -> Table | None:
    """Per member with SWA: the epochs averaged, and test accuracy and log-loss of the selected checkpoint
    against the SWA one."""
    members = [m for m in run.members if m.swa_epochs]
    if not members:
        return None
    values = store.checkpoint_metrics(run.run_id)
    table = new_table("SWA: the average of the last epochs' weights against the selected checkpoint (test)")
    for col in ("member", "averaged\nepochs", "selected"):
        table.add_column(col, overflow="fold")
    for col in ("test\naccuracy", "swa test\naccuracy", "gain", "test\nlog loss", "swa test\nlog loss"):
        table.add_column(col, justify="right", no_wrap=True)
    for m in members:
        sel = values.get(("member", m.name, m.selected_checkpoint or ""), {})
        swa = values.get(("member", m.name, "swa"), {})

        def f(d, k):
            return f"{d[k]:.4f}" if k in d else ""

        gain = (f"{swa['test_accuracy'] - sel['test_accuracy']:+.4f}"
                if "test_accuracy" in swa and "test_accuracy" in sel else "")
        table.add_row(m.name, ", ".join(map(str, m.swa_epochs)), m.selected_checkpoint or "", f(sel, "test_accuracy"),
                      f(swa, "test_accuracy"), gain, f(sel, "test_log_loss"), f(swa, "test_log_loss"))
    return table


def weights_table(store: Store, run: RunRecord) -> Table | None:
    rows = store.ensemble_weights(run.run_id)
    if not rows:
        return None
    order = {m.name: i for i, m in enumerate(run.members)}
    rows.sort(key=lambda r: (r["ensemble"] != "ensemble", r["ensemble"], r["strategy"], order.get(r["member"], 1e9)))
    table = new_table("Ensemble weights (table ensemble_weights)")
    for col in ("ensemble", "strategy", "method", "member", "checkpoint"):
        table.add_column(col, overflow="fold")
    table.add_column("weight", justify="right", no_wrap=True)
    previous = None
    for r in rows:
        key = (r["ensemble"], r["strategy"])
        if previous is not None and key != previous:
            table.rows[-1].end_section = True
        previous = key
        first = len(table.rows) == 0 or table.rows[-1].end_section
        table.add_row(r["ensemble"] if first else "", r["strategy"] if first else "", (r["method"] or "") if first
                      else "", r["member"], r["member_checkpoint"] or "", f"{r['weight']:.4f}")
    return table


def plots(store: Store, run: RunRecord, registry=None) -> str:
    """`runner plot`'s panels, one image each, so that a phone shows each at its width."""
    data = plot.load_run(store, run, registry)
    if not data.epochs:
        return "<p>No epoch has been stored yet.</p>"
    alts = {"loss": "loss per epoch", "accuracy": "accuracy per epoch", "f1": "validation macro-F1 per epoch",
            "shares": "predicted class shares against the true shares",
            "confusion": "confusion matrix of the spec's model"}
    images = [_image(plot.png(plot.figure(data, panels=(name,), ncols=1)), f"{alts[name]}, run {run.run_id}")
              for name in plot.PANELS]
    return '<div class="plots">' + "".join(images) + "</div>"


# -- a sweep ----------------------------------------------------------------------------------------


def sweep_sections(store: Store, sweep: dict, registry) -> list[tuple[str, str]]:
    view = sweep_view.load_view(store, sweep["sweep_id"], registry)
    facts = [("name", sweep.get("name")), ("objective", f"{sweep['objective']} ({sweep['direction']}, "
                                                       f"{'member ' + sweep['objective_member'] if sweep['objective_member'] else 'ensemble'})"),
             ("trials", len(view.trials)), ("storage", sweep.get("storage")), ("created", _time(sweep.get("created_at")))]
    sections = [("Sweep", _facts(facts)), ("Trials, best params and re-scoring", to_html(sweep_view.render(view)))]
    try:
        image = _image(plot.png(sweep_plot.figure(sweep_plot.load(store, sweep))), f"objective by trial and parameter slices, sweep {sweep['sweep_id']}")
    except InputError as e:  # no trial has finished with a value yet: the tables still say what there is
        image = f"<p>{html.escape(str(e))}</p>"
    sections.append(("Plots", image))
    spec = sweep.get("spec")
    if spec:
        text = json.dumps(json.loads(spec) if isinstance(spec, str) else spec, indent=2, ensure_ascii=False)
        sections.append(("Spec", f"<pre>{html.escape(text)}</pre>"))
    return sections


# -- the output file --------------------------------------------------------------------------------


def is_report(path: Path) -> bool:
    """Whether `path` is a page this command wrote (its head carries the generator mark)."""
    try:
        with open(path, "rb") as f:
            return _MARK.encode() in f.read(2048)
    except OSError:
        return False
