"""The one table printer of the benchmarks (Markdown, so a run's output pastes into docs/)."""

from __future__ import annotations

import os

__all__ = ["machine", "table"]


def machine() -> str:
    """The machine a speed was measured on, and how busy it was: "2 CPUs, load average 1.93 (1 min)".
    Speeds on a loaded machine read lower: compare rows of one run, not runs of different days."""
    return f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min)"


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of `rows` (dicts), in the order of `columns` (default: the first row's
    keys); missing values print as "-"."""
    cols = columns or list(rows[0])
    cells = [[str(r.get(c, "-")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cols), sep, *(line(row) for row in cells)])
