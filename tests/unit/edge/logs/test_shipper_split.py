"""A stream's lines are split over Kafka messages below the topic's size limit."""

from __future__ import annotations

import os
import random

import yaml

from edge.logs.shipper import LogShipper
from edge.logs.tailer import TRUNCATION_MARKER
from ferryman.wire import loki
from ferryman.wire.remote_write import snappy_compress


def _shipper(tmp_path, max_message: int) -> LogShipper:
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump({
        "positions": {"filename": str(tmp_path / "positions.json")},
        "ferryman": {"kafka": {"max_message_bytes": max_message}}}))
    return LogShipper(config)


def test_messages_stay_under_the_limit_and_keep_every_line_in_order(tmp_path) -> None:
    shipper = _shipper(tmp_path, 256 << 10)
    rng = random.Random(1)
    entries = [loki.Entry(i, os.urandom(rng.randrange(1, 3000)).hex() + " é\ufffd")
               for i in range(2000)]
    parts = shipper._split(entries, 256 << 10)
    assert len(parts) > 10
    assert [e for part in parts for e in part] == entries
    for part in parts:
        payload = loki.encode_push_request([loki.Stream({"job": "x"}, part)])
        assert len(snappy_compress(payload)) < (256 << 10) - 4096


def test_a_line_too_big_for_any_message_is_cut_with_the_marker_and_counted(tmp_path) -> None:
    shipper = _shipper(tmp_path, 128 << 10)
    huge = "x" * (1 << 20)
    parts = shipper._split([loki.Entry(1, "a"), loki.Entry(2, huge), loki.Entry(3, "b")],
                           128 << 10)
    lines = [e.line for part in parts for e in part]
    assert lines[0] == "a" and lines[2] == "b"
    assert lines[1].endswith(TRUNCATION_MARKER) and huge.startswith(
        lines[1][:-len(TRUNCATION_MARKER)])
    assert len(lines[1].encode()) < 128 << 10
    assert "ferryman_lines_truncated_total 1" in shipper.registry.render()
