"""The one table printer of the benchmarks (Markdown, so a run's output pastes into docs/)."""

from __future__ import annotations

__all__ = ["table"]


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of `rows` (dicts), in the order of `columns` (default: the first row's
    keys); missing values print as "-"."""
    cols = columns or list(rows[0])
    cells = [[str(r.get(c, "-")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cols), sep, *(line(row) for row in cells)])
