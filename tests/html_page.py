"""An HTML page parsed with the standard library, for the tests of `runner report` (tests/analysis/test_report.py,
tests/analysis/test_sweep_plot.py): its tables cell by cell, its images, every URL-bearing attribute."""

from __future__ import annotations

from html.parser import HTMLParser


class Page(HTMLParser):
    """Tables (caption: the title, header cells, body rows of (text, classes)), images, every URL-bearing
    attribute."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self.images: list[str] = []
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: set[str] = set()
        self.meta: dict[str, str] = {}
        self._cell: list | None = None
        self._in_head = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        for name in ("src", "href", "srcset", "action", "poster", "data"):
            if name in a:
                self.urls.append((tag, name, a[name]))
        if tag == "meta" and "name" in a:
            self.meta[a["name"]] = a.get("content", "")
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":  # runner.analysis.tables gives a table its title as aria-label (shown above it)
            self.tables.append({"caption": a.get("aria-label", ""), "headers": [], "rows": []})
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and not self._in_head:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = [[], set((a.get("class") or "").split())]
        elif tag == "br" and self._cell is not None:
            self._cell[0].append(" ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text, classes = "".join(self._cell[0]), self._cell[1]
            if tag == "th" and self._in_head:
                self.tables[-1]["headers"].append(text)
            else:
                self.tables[-1]["rows"][-1].append((text, classes))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0].append(data)

    def table(self, caption_start: str) -> dict:
        found = [t for t in self.tables if t["caption"].startswith(caption_start)]
        assert len(found) == 1, [t["caption"] for t in self.tables]
        return found[0]


def column(table: dict, name: str) -> int:
    return table["headers"].index(name)
