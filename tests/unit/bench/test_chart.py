"""bench.chart: a bench's rows become a valid PNG of a known size, the same bytes every
time for the same rows, with the values each bench's results file holds."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from bench import chart

ROOT = Path(__file__).resolve().parents[3]
ROWS = [
    {"peer": "ferryman edge", "cpu_s_per_million": 1.25, "peak_rss_mib": 64.0},
    {"peer": "vmagent", "cpu_s_per_million": 2.5, "peak_rss_mib": 81.2},
]


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """The PNG's chunks (type, data), each CRC checked."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    found, at = [], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + data) == crc
        found.append((kind, data))
        at += 12 + length
    return found


def test_rows_render_a_png_of_the_expected_size_the_same_twice(tmp_path: Path) -> None:
    tables = chart.groups("gateway", {"rows": ROWS})
    first = chart.render("bench:test", tables, "Machine: test; 2026-12-06", tmp_path / "a.png")
    second = chart.render("bench:test", tables, "Machine: test; 2026-12-06", tmp_path / "b.png")
    png = first.read_bytes()
    found = chunks(png)
    assert found[0][0] == b"IHDR" and found[-1] == (b"IEND", b"")
    width, height = struct.unpack(">II", found[0][1][:8])
    # 12 in x (0.6 title + 0.9 table heading + 2 bars x 0.42 + 0.6 caption) at 100 dpi.
    assert (width, height) == (1200, 294) == chart.size_px(tables)
    assert sum(len(data) for kind, data in found if kind == b"IDAT") > 1000
    text = b"".join(data for kind, data in found if kind in (b"tEXt", b"iTXt", b"zTXt"))
    assert b"Software" not in text and b"matplotlib" not in text
    assert second.read_bytes() == png
    other = chart.render("bench:test", tables, "Machine: test; 2026-12-07", tmp_path / "c.png")
    assert other.read_bytes() != png


def test_each_bench_results_shape_gives_its_tables() -> None:
    logs = chart.groups(
        "logs",
        {
            "lines": 4_000_000,
            "shippers": [
                {"peer": "ferryman edge logs", "cpu_s": 4.72, "peak_rss_mib": 64.0},
                {"peer": "rsyslog imfile → omkafka", "cpu_s": 18.93, "peak_rss_mib": 91.1},
            ],
        },
    )
    assert [(b.peer, round(b.cpu_s_per_million, 2), b.ferryman) for b in logs[0].bars] == [
        ("ferryman edge logs", 1.18, True),
        ("rsyslog imfile → omkafka", 4.73, False),
    ]
    worker = {
        **ROWS[0],
        "peer": "ferryman worker otlp_traces",
        "backend_cpu_s": 4.7,
        "with_backend_cpu_s_per_million": 8.78,
        "backend_peak_rss_mib": 1000.0,
    }
    traces = chart.groups("traces", {"kafka_to_storage": [worker, {**ROWS[1], "peer": "Jaeger"}]})
    assert [(b.peer, b.cpu_s_per_million, b.peak_rss_mib) for b in traces[0].bars] == [
        ("ferryman worker otlp_traces", 1.25, 64.0),
        ("ferryman worker otlp_traces + its Jaeger", 8.78, 1064.0),
        ("Jaeger", 2.5, 81.2),
    ]
    metrics = chart.groups("metrics", {"edge": ROWS, "worker": ROWS})
    assert [g.title for g in metrics] == [
        "Edge: scrape and ship",
        "Worker: remote write from Kafka",
    ]
    shape = {"targets": 2000, "samples_per_target": 100, "kind": "counters"}
    scenarios = chart.groups(
        "metrics",
        {
            "edge_histograms": ROWS,
            "edge_many_targets": ROWS,
            "scenarios": {"edge_many_targets": shape},
            "cold_start": [{"peer": "vmagent", "median_s": 1.0}],
        },
    )
    assert [g.title for g in scenarios] == [
        "Edge, many targets: scrape and ship (2,000 targets x 100 counter samples)",
        "Edge, histograms: scrape and ship",
    ]
    assert chart.is_ferryman("gateway remote write 1.0 (pass-through)")
    assert not chart.is_ferryman("vmagent (remote write in → out)")
    with pytest.raises(ValueError, match="no table"):
        chart.groups("traces", {"spans": 10})


def test_a_saved_results_file_renders_from_the_command_line(tmp_path: Path) -> None:
    results = tmp_path / "results-gateway.json"
    results.write_text(json.dumps({"conditions": "Machine: test", "rows": ROWS}))
    out = tmp_path / "charts" / "gateway.png"
    subprocess.run(
        [sys.executable, "-m", "bench.chart", str(results), "--chart", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    direct = chart.write("gateway", json.loads(results.read_text()), tmp_path / "direct.png")
    assert out.read_bytes() == direct.read_bytes()
