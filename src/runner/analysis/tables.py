"""The tables runner prints, as GitHub-flavoured markdown (`--format markdown`) and as HTML (`runner
report`): the very cells of the rich tables the terminal shows, so every number reads the same in all
three. A cell that the terminal shows in green (the best value of a column) is bold in markdown and
marked `best` in HTML; red (a failed member) is marked `bad`.

What goes in is what the commands print: a rich `Table`, a `Group` of tables and lines, a string, or a
list of those.

`table()` makes the tables themselves: a rule under the header and no frame (two spaces between
columns instead of three characters), sized for the terminal it is printed in (`FitTable`): numbers
are never cut, text columns wrap or shorten instead.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from rich import box
from rich.console import Group
from rich.errors import MarkupError
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

FLEXIBLE_MIN = 8  # the narrowest a text column becomes when the terminal is narrow (its `min_width` if set)


class FitTable(Table):
    """A rich table sized for the width it is printed at. Columns with `no_wrap` (numbers, ids) keep
    their width; when the table is wider than the terminal, the columns are first set one space apart
    instead of two, then the other columns (names, labels) give up width, the widest first, each down
    to its `min_width` (8 when unset; a right-aligned one never below its widest value): their text
    wraps, or is shortened with "…" where the column says `overflow="ellipsis"`. rich alone would cut
    every column, numbers included."""

    def __rich_console__(self, console, options):
        self._fit(console, options)
        yield from super().__rich_console__(console, options)

    def __rich_measure__(self, console, options):
        self._fit(console, options)
        return super().__rich_measure__(console, options)

    def _fit(self, console, options) -> None:
        flexible = [c for c in self.columns if not c.no_wrap]
        for c in flexible:  # what the caller set, kept across prints at other widths
            c.max_width = c.__dict__.setdefault("_own_max_width", c.max_width)
        self.padding = self.__dict__.setdefault("_own_padding", self.padding)
        available = min(self.width or options.max_width, options.max_width)
        wide = options.update_width(10_000)
        excess = Table.__rich_measure__(self, console, wide).maximum - available
        if excess > 0 and self.box is not None:  # one space between columns (the box's) instead of two
            self.padding = (0, 0)
            excess = Table.__rich_measure__(self, console, wide).maximum - available
        if excess <= 0 or not flexible:
            return
        natural = [min(_natural(console, wide, c), c.max_width or 10_000) for c in flexible]
        floor = [min(n, c.min_width if c.min_width is not None else FLEXIBLE_MIN) for n, c in zip(natural, flexible)]
        # a right-aligned column (numbers under a long header) never below its widest value
        floor = [max(f, _natural(console, wide, c, header=False)) if c.justify == "right" else f
                 for f, c in zip(floor, flexible)]
        level = max(natural)
        while level > 0 and sum(n - max(f, min(n, level)) for n, f in zip(natural, floor)) < excess:
            level -= 1
        widths = [max(f, min(n, level)) for n, f in zip(natural, floor)]
        spare = sum(natural) - sum(widths) - excess  # cut beyond the excess (columns at their floor): give back
        for i in sorted(range(len(widths)), key=lambda i: natural[i] - widths[i]):  # most columns made whole
            back = min(max(spare, 0), natural[i] - widths[i])
            widths[i] += back
            spare -= back
        for c, w in zip(flexible, widths):
            c.max_width = w


def _natural(console, options, column, header: bool = True) -> int:
    """The widest line of a column's cells (and header)."""
    widths = [1]
    for cell in [column.header, *column.cells] if header else column.cells:
        renderable = console.render_str(cell) if isinstance(cell, str) else cell
        widths.append(Measurement.get(console, options, renderable).maximum)
    return max(widths)


def table(title: str | None = None, caption: str | None = None, **options) -> FitTable:
    """A table as runner prints it: a rule under the header, no frame, sized for the terminal."""
    options = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "collapse_padding": True,
               "title_justify": "left", "caption_justify": "left", **options}
    return FitTable(title=title, caption=caption, **options)


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False  # shown green in the terminal: the best value of its column
    bad: bool = False  # shown red: a failure


@dataclass
class Grid:
    """A table as plain cells: what both markdown and HTML are written from."""

    title: str
    caption: str
    headers: list[str]
    right: list[bool]  # per column: right-aligned (numbers)
    rows: list[list[Cell]]
    sections: list[int]  # indexes of the rows that start a new block (after a rule in the terminal)
    emphasis: list[bool]  # per row: shown in italics (an ensemble's row)


def _text(value) -> Text:
    if isinstance(value, Text):
        return value
    if value is None:
        return Text("")
    if isinstance(value, str):
        try:
            return Text.from_markup(value)  # rich reads a str cell as markup: "[bold green]0.75[/]"
        except MarkupError:
            return Text(value)
    return Text(str(value))


def _style_of(text: Text) -> str:
    return " ".join([str(text.style or "")] + [str(s.style) for s in text.spans])


def cell(value) -> Cell:
    text = _text(value)
    style = _style_of(text)
    return Cell(text.plain, best="green" in style, bad="red" in style)


def grid(table: Table) -> Grid:
    columns = table.columns
    cells = [list(c.cells) for c in columns]
    n = len(table.rows)
    rows = [[cell(cells[j][i]) if i < len(cells[j]) else Cell("") for j in range(len(columns))] for i in range(n)]
    for row, r in zip(rows, table.rows):  # a whole row in green (`runner sweep`'s best trial): each of its cells
        if "green" in str(r.style or ""):
            row[:] = [Cell(c.text, best=bool(c.text.strip()), bad=c.bad) for c in row]
    sections = [i + 1 for i, r in enumerate(table.rows) if r.end_section and i + 1 < n]
    emphasis = ["italic" in str(r.style or "") for r in table.rows]
    return Grid(_text(table.title).plain if table.title else "", _text(table.caption).plain if table.caption else "",
                [_text(c.header).plain for c in columns], [c.justify == "right" for c in columns], rows, sections,
                emphasis)


def _parts(renderable) -> list:
    if isinstance(renderable, (list, tuple)):
        return [p for r in renderable for p in _parts(r)]
    if isinstance(renderable, Group):
        return [p for r in renderable.renderables for p in _parts(r)]
    return [renderable]


# -- markdown ---------------------------------------------------------------------------------------


def _md(text: str) -> str:
    """A cell's text made safe inside a GFM table row: one line, no column break, no raw HTML."""
    text = " ".join(text.split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def markdown_table(headers: list[str], rows: list[list[Cell]], right: list[bool]) -> str:
    """A GFM pipe table: a header row, the alignment row (`---:` for numbers), one line per row."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    out = [line([_md(h) or " " for h in headers]), line(["---:" if r else "---" for r in right])]
    for row in rows:
        out.append(line([f"**{_md(c.text)}**" if c.best and c.text.strip() else _md(c.text) for c in row]))
    return "\n".join(out) + "\n"


def to_markdown(renderable) -> str:
    """Markdown of what a command prints: each table with its title (bold) above and caption below,
    each line of text as a paragraph; blank lines between them, as GFM needs around a table."""
    blocks = []
    for part in _parts(renderable):
        if isinstance(part, Table):
            g = grid(part)
            if g.title:
                blocks.append(f"**{_md(g.title)}**\n")
            blocks.append(markdown_table(g.headers, g.rows, g.right))
            if g.caption:
                blocks.append(_md(g.caption) + "\n")
        else:
            text = _text(part).plain.strip()
            if text:
                blocks.append(_md(text) + "\n")
    return "\n".join(blocks)


# -- HTML -------------------------------------------------------------------------------------------


def to_html(renderable) -> str:
    """HTML of what a command prints: each table in a horizontally scrolling box (wide tables stay
    readable on a phone), its title above it (and its `aria-label`), the terminal's caption as a note
    below it."""
    out = []
    for part in _parts(renderable):
        if isinstance(part, Table):
            out.append(html_table(grid(part)))
        else:
            text = _text(part).plain.strip()
            if text:
                out.append(f"<p>{html.escape(text)}</p>")
    return "\n".join(out)


def html_table(g: Grid) -> str:
    def esc(text: str) -> str:
        return html.escape(text).replace("\n", "<br>")

    num = ' class="num"'
    head = "".join(f"<th{num if r else ''}>{esc(h)}</th>" for h, r in zip(g.headers, g.right))
    bodies, rows = [], []
    for i, row in enumerate(g.rows):
        if i in g.sections and rows:
            bodies.append(rows)
            rows = []
        tds = []
        for c, right in zip(row, g.right):
            classes = [k for k, on in (("num", right), ("best", c.best), ("bad", c.bad)) if on]
            attr = f' class="{" ".join(classes)}"' if classes else ""
            tds.append(f"<td{attr}>{esc(c.text)}</td>")
        em = ' class="em"' if g.emphasis[i] else ""
        rows.append(f"<tr{em}>{''.join(tds)}</tr>")
    if rows:
        bodies.append(rows)
    body = "".join("<tbody>" + "".join(b) + "</tbody>" for b in bodies)
    # the title above the scrolling box, not a <caption> inside it: on a phone it wraps on the screen
    # instead of scrolling away with a wide table
    title = f'<p class="title">{esc(g.title)}</p>' if g.title else ""
    label = f' aria-label="{html.escape(g.title)}"' if g.title else ""
    note = f'<p class="note">{esc(g.caption)}</p>' if g.caption else ""
    return (f'{title}<div class="scroll"><table{label}><thead><tr>{head}</tr></thead>{body}</table></div>'
            f"{note}")
