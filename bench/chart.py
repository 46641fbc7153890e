"""A bench's table as a PNG: CPU-seconds per million records and peak RSS, per peer.

One figure per bench: a row of two horizontal bar panels (CPU-s per 1M, lower is
better; peak RSS MiB) for each of its tables, ferryman's rows highlighted, every bar
labelled with its value, the run's conditions (machine, date) as the caption.

The output is deterministic: the Agg canvas, a fixed width and dpi, a height that
depends only on the number of tables and rows, and no ``Software`` or date in the
PNG's metadata, so the same results render byte-identical files (with the same
matplotlib and fonts).

Each bench's ``main`` calls :func:`write` at the end of a run (default path
``docs/bench/<name>.png``, ``--chart PATH`` to override); a saved results file
re-renders with ``python -m bench.chart bench/results-<name>.json [--chart PATH]``.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "docs" / "bench"

WIDTH_IN = 12.0
DPI = 100
#: Vertical inches: above everything (the title), per table heading, per bar, and the caption.
TOP_IN, GROUP_IN, BAR_IN, CAPTION_IN = 0.6, 0.9, 0.42, 0.6
FERRYMAN = "#d9480f"
PEER = "#868e96"


@dataclass(frozen=True)
class Bar:
    """One row of a table: a peer's CPU-seconds per million records and peak RSS."""

    peer: str
    cpu_s_per_million: float
    peak_rss_mib: float
    ferryman: bool


@dataclass(frozen=True)
class Group:
    """One table: its bars in the table's order; ``unit`` names the records (samples...)."""

    title: str
    unit: str
    bars: tuple[Bar, ...]


def is_ferryman(peer: str) -> bool:
    """Whether a peer name is one of ferryman's own candidates (the gateway's included)."""
    return peer.startswith(("ferryman", "gateway ", "loki →", "elasticsearch_logs →"))


def _bar(row: dict[str, Any], cpu_key: str = "cpu_s_per_million") -> Bar:
    return Bar(row["peer"], row[cpu_key], row["peak_rss_mib"], is_ferryman(row["peer"]))


def _traces(rows: list[dict[str, Any]]) -> tuple[Bar, ...]:
    bars: list[Bar] = []
    for r in rows:
        bars.append(_bar(r))
        if "backend_cpu_s" in r:
            bars.append(
                Bar(
                    f"{r['peer']} + its Jaeger",
                    r["with_backend_cpu_s_per_million"],
                    r["peak_rss_mib"] + r["backend_peak_rss_mib"],
                    True,
                )
            )
    return tuple(bars)


def groups(name: str, results: dict[str, Any]) -> list[Group]:
    """The tables of bench ``name`` from its results file's content (``results``)."""
    found: list[Group] = []
    if name == "metrics":
        for key, title in (
            ("edge", "Edge: scrape and ship"),
            ("edge_many_targets", "Edge, many targets: scrape and ship"),
            ("edge_histograms", "Edge, histograms: scrape and ship"),
        ):
            if results.get(key):
                shape = results.get("scenarios", {}).get(key)
                if shape:
                    title += (
                        f" ({shape['targets']:,} targets x {shape['samples_per_target']:,}"
                        f" {shape['kind'].removesuffix('s')} samples)"
                    )
                found.append(Group(title, "samples", tuple(_bar(r) for r in results[key])))
        if results.get("worker"):
            bars = tuple(_bar(r) for r in results["worker"])
            found.append(Group("Worker: remote write from Kafka", "samples", bars))
    elif name == "logs":
        if results.get("shippers"):
            lines = results["lines"]
            bars = tuple(
                Bar(r["peer"], r["cpu_s"] / lines * 1e6, r["peak_rss_mib"], is_ferryman(r["peer"]))
                for r in results["shippers"]
            )
            found.append(Group("Shippers: files → Kafka", "lines", bars))
        if results.get("functions"):
            bars = tuple(_bar(r) for r in results["functions"])
            found.append(Group("Functions: Kafka → backend", "lines", bars))
    elif name == "traces":
        if results.get("receiver_to_kafka"):
            bars = _traces(results["receiver_to_kafka"])
            found.append(Group("Leg 1: OTLP/HTTP receiver → Kafka", "spans", bars))
        if results.get("kafka_to_storage"):
            bars = _traces(results["kafka_to_storage"])
            found.append(Group("Leg 2: Kafka → storage", "spans", bars))
    elif name == "gateway":
        bars = tuple(_bar(r) for r in results["rows"])
        found.append(Group("Remote write into the gateway → Kafka, and vmagent", "samples", bars))
    else:
        raise ValueError(f"no chart for bench {name!r}")
    if not found:
        raise ValueError(f"the {name} results hold no table to chart")
    return found


def size_px(tables: Sequence[Group]) -> tuple[int, int]:
    """Width and height, in pixels, of the chart of ``tables``."""
    height = TOP_IN + CAPTION_IN + sum(GROUP_IN + BAR_IN * len(g.bars) for g in tables)
    return round(WIDTH_IN * DPI), round(height * DPI)


def _panel(ax: Any, bars: tuple[Bar, ...], values: list[float], label: str, fmt: str) -> None:
    ys = list(range(len(bars)))
    ax.barh(ys, values, color=[FERRYMAN if b.ferryman else PEER for b in bars], height=0.65)
    ax.set_ylim(len(bars) - 0.5, -0.5)
    ax.set_xlabel(label, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    top = max(values) if values and max(values) > 0 else 1.0
    ax.set_xlim(0, top * 1.2)
    for y, value in zip(ys, values, strict=True):
        ax.text(value + top * 0.01, y, fmt.format(value), va="center", fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def render(title: str, tables: Sequence[Group], caption: str, path: Path) -> Path:
    """Draw ``tables`` into the PNG at ``path`` (its folder made if missing)."""
    width, height = size_px(tables)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    h_in = height / DPI

    def y(inches_from_top: float) -> float:
        return 1 - inches_from_top / h_in

    fig.text(0.015, y(0.35), title, fontsize=12, fontweight="bold")
    top = TOP_IN
    for g in tables:
        fig.text(0.015, y(top + 0.3), g.title, fontsize=10, fontweight="bold")
        bottom = top + GROUP_IN + BAR_IN * len(g.bars)
        # Between the heading and the x labels under the axes: BAR_IN per bar.
        box = (y(bottom - 0.45), BAR_IN * len(g.bars) / h_in)
        panels = (
            (
                0.25,
                [b.cpu_s_per_million for b in g.bars],
                f"CPU-s per 1M {g.unit}, lower is better",
                "{:.2f}",
            ),
            (0.63, [b.peak_rss_mib for b in g.bars], "peak RSS MiB", "{:,.0f}"),
        )
        for x, values, label, fmt in panels:
            ax = fig.add_axes((x, box[0], 0.34, box[1]))
            _panel(ax, g.bars, values, label, fmt)
            if x == panels[0][0]:
                ax.set_yticks(range(len(g.bars)), [textwrap.fill(b.peer, 40) for b in g.bars])
                ax.tick_params(axis="y", labelsize=8)
                for tick, bar in zip(ax.get_yticklabels(), g.bars, strict=True):
                    if bar.ferryman:
                        tick.set_fontweight("bold")
            else:
                ax.set_yticks([])
        top = bottom
    fig.text(
        0.015,
        y(height / DPI - CAPTION_IN + 0.15),
        textwrap.fill(caption, 210),
        fontsize=7,
        color="#495057",
        va="top",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def write(name: str, results: dict[str, Any], path: Path | None = None) -> Path:
    """The chart of bench ``name``'s ``results`` (as its results file holds them) at
    ``path`` (default ``docs/bench/<name>.png``); the caption is ``results["conditions"]``,
    and ``results["source"]``, where present, follows the title (figures not from a run).
    Returns the path written."""
    caption = results.get("conditions", "")
    title = f"bench:{name}"
    if results.get("source"):
        title += f" ({results['source']})"
    return render(title, groups(name, results), caption, path or CHARTS / f"{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path, help="a bench/results-<name>.json")
    parser.add_argument(
        "--chart", type=Path, default=None, help="PNG path (default: docs/bench/<name>.png)"
    )
    parser.add_argument(
        "--caption", default=None, help="caption (default: the results' conditions line)"
    )
    args = parser.parse_args()
    name = args.results.stem.removeprefix("results-")
    results = json.loads(args.results.read_text())
    if args.caption is not None:
        results["conditions"] = args.caption
    print(write(name, results, args.chart))


if __name__ == "__main__":
    main()
