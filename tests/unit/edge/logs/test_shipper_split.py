"""A stream's lines are split over Kafka messages below the topic's size limit."""

from __future__ import annotations

import os
import random

import yaml

from edge.logs.shipper import LogShipper
from edge.logs.tailer import TRUNCATION_MARKER
from ferryman.wire import loki
from ferryman.wire.remote_write import snappy_compress, snappy_decompress


def _shipper(tmp_path, max_message: int) -> LogShipper:
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "positions": {"filename": str(tmp_path / "positions.json")},
                "ferryman": {"kafka": {"max_message_bytes": max_message}},
            }
        )
    )
    return LogShipper(config)


def test_messages_stay_under_the_limit_and_keep_every_line_in_order(tmp_path) -> None:
    shipper = _shipper(tmp_path, 256 << 10)
    rng = random.Random(1)
    entries = [
        loki.Entry(i, os.urandom(rng.randrange(1, 3000)).hex() + " é\ufffd") for i in range(2000)
    ]
    parts = shipper._split(entries, 256 << 10)
    assert len(parts) > 10
    assert [e for part in parts for e in part] == entries
    for part in parts:
        payload = loki.encode_push_request([loki.Stream({"job": "x"}, part)])
        assert len(snappy_compress(payload)) < (256 << 10) - 4096


def test_a_line_too_big_for_any_message_is_cut_with_the_marker_and_counted(tmp_path) -> None:
    shipper = _shipper(tmp_path, 128 << 10)
    huge = "x" * (1 << 20)
    parts = shipper._split([loki.Entry(1, "a"), loki.Entry(2, huge), loki.Entry(3, "b")], 128 << 10)
    lines = [e.line for part in parts for e in part]
    assert lines[0] == "a" and lines[2] == "b"
    assert lines[1].endswith(TRUNCATION_MARKER) and huge.startswith(
        lines[1][: -len(TRUNCATION_MARKER)]
    )
    assert len(lines[1].encode()) < 128 << 10
    assert shipper.registry.value("ferryman_lines_truncated_total") == 1


def _decoded(messages: list[tuple[bytes, int]]) -> list[loki.Entry]:
    out = []
    for message, count in messages:
        entries = [
            entry
            for stream in loki.decode_push_request(snappy_decompress(message))
            for entry in stream.entries
        ]
        assert len(entries) == count  # what the ferryman.lines header is cut by
        out += entries
    return out


def test_kafka_messages_natively_stay_under_the_limit_with_every_line(tmp_path) -> None:
    shipper = _shipper(tmp_path, 256 << 10)
    rng = random.Random(2)
    entries = loki.Entries(
        list(range(10**18, 10**18 + 2000)),
        [os.urandom(rng.randrange(1, 3000)).hex() + " é" for _ in range(2000)],
    )
    messages = shipper._messages('{job="x"}', entries, 256 << 10)
    assert len(messages) > 10
    assert all(len(message) < (256 << 10) - 4096 for message, _ in messages)
    assert _decoded(messages) == list(entries)


def test_kafka_messages_the_native_pass_declines_go_the_python_way(tmp_path) -> None:
    shipper = _shipper(tmp_path, 128 << 10)
    odd = loki.Entries([-86_400 * 10**9, 2**64, 3], ["1969", "after 2262", "now"])
    assert _decoded(shipper._messages('{job="x"}', odd, 128 << 10)) == list(odd)
    huge = loki.Entries([1, 2, 3], ["a", "x" * (1 << 20), "b"])
    lines = [e.line for e in _decoded(shipper._messages('{job="x"}', huge, 128 << 10))]
    assert lines[0] == "a" and lines[2] == "b" and lines[1].endswith(TRUNCATION_MARKER)
    assert shipper.registry.value("ferryman_lines_truncated_total") == 1


def test_the_lines_header_is_cut_along_the_messages() -> None:
    from edge.logs.shipper import _cut_runs

    a, b = b"a" * 16, b"b" * 16
    runs = [(a, [1, 2, 3]), (b, [4, 5])]
    parts = [(b"", 2), (b"", 2), (b"", 1)]
    assert _cut_runs(runs, parts) == [[(a, [1, 2])], [(a, [3]), (b, [4])], [(b, [5])]]
    assert _cut_runs(None, parts) == [None, None, None]
