from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.diskqueue import DiskQueue

Opener = Callable[..., DiskQueue]


@pytest.fixture
def open_queue() -> Iterator[Opener]:
    opened: list[DiskQueue] = []

    def make(*args: Any, **kwargs: Any) -> DiskQueue:
        queue = DiskQueue(*args, **kwargs)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


def _payloads(queue: DiskQueue, n: int = 1000) -> list[bytes]:
    return [e.payload for e in queue.read(n, 2**30)]


def test_fifo_across_segments_and_ack_survives_reopen(tmp_path: Path, open_queue: Opener) -> None:
    queue = open_queue(tmp_path, max_bytes=10**6, segment_bytes=4096)
    items = [f"record-{i}".encode() * 20 for i in range(100)]
    for i, item in enumerate(items):
        queue.append(i % 4, 10, item)
    assert len(list(tmp_path.glob("*.seg"))) > 3
    first = queue.read(30, 2**30)
    assert [e.payload for e in first] == items[:30]
    queue.ack(first[-1].end)
    queue.close()

    reopened = open_queue(tmp_path, max_bytes=10**6, segment_bytes=4096)
    assert _payloads(reopened) == items[30:]


def test_unacknowledged_records_come_back_after_rewind_and_restart(
    tmp_path: Path, open_queue: Opener
) -> None:
    queue = open_queue(tmp_path, max_bytes=10**6)
    for i in range(5):
        queue.append(0, 1, bytes([i]))
    assert _payloads(queue) == [bytes([i]) for i in range(5)]
    assert _payloads(queue) == []
    queue.rewind()
    assert _payloads(queue) == [bytes([i]) for i in range(5)]
    queue.close()
    assert _payloads(open_queue(tmp_path, max_bytes=10**6)) == [bytes([i]) for i in range(5)]


def test_torn_tail_is_cut_off(tmp_path: Path, open_queue: Opener) -> None:
    queue = open_queue(tmp_path, max_bytes=10**6)
    queue.append(1, 2, b"complete")
    queue.close()
    segment = next(tmp_path.glob("*.seg"))
    with segment.open("ab") as f:
        f.write(b"\x20\x00\x00\x00garbage-half-written")
    reopened = open_queue(tmp_path, max_bytes=10**6)
    entries = reopened.read(10, 2**30)
    assert [(e.bucket, e.samples, e.payload) for e in entries] == [(1, 2, b"complete")]
    reopened.append(0, 1, b"after")
    assert _payloads(reopened) == [b"after"]


def test_bound_drops_oldest_and_reports_every_sample(tmp_path: Path, open_queue: Opener) -> None:
    dropped: list[tuple[int, int]] = []
    queue = open_queue(
        tmp_path,
        max_bytes=20_000,
        segment_bytes=5_000,
        on_drop=lambda records, samples: dropped.append((records, samples)),
    )
    for i in range(200):
        queue.append(0, 7, i.to_bytes(4, "big") * 50)
    kept = [int.from_bytes(p[:4], "big") for p in _payloads(queue)]
    lost_records = sum(r for r, _ in dropped)
    assert lost_records + len(kept) == 200
    assert sum(s for _, s in dropped) == 7 * lost_records
    assert kept == list(range(lost_records, 200)), "survivors must be the newest, in order"
    assert sum(p.stat().st_size for p in tmp_path.glob("*.seg")) <= 20_000


def test_acknowledged_records_are_not_reported_as_dropped(
    tmp_path: Path, open_queue: Opener
) -> None:
    dropped: list[tuple[int, int]] = []
    queue = open_queue(
        tmp_path,
        max_bytes=20_000,
        segment_bytes=5_000,
        on_drop=lambda records, samples: dropped.append((records, samples)),
    )
    for _i in range(20):
        queue.append(0, 1, b"x" * 200)
    entries = queue.read(1000, 2**30)
    queue.ack(entries[-1].end)
    for _i in range(60):
        queue.append(0, 1, b"y" * 200)
    assert all(p == b"y" * 200 for p in _payloads(queue))
    assert sum(r for r, _ in dropped) + len(_payloads_after_rewind(queue)) == 60


def _payloads_after_rewind(queue: DiskQueue) -> list[bytes]:
    queue.rewind()
    return _payloads(queue)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=300), max_size=60),
    st.integers(min_value=0, max_value=60),
)
def test_order_is_kept_for_any_payloads(
    tmp_path_factory: object, items: list[bytes], ack_after: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        queue = DiskQueue(Path(directory), max_bytes=10**7, segment_bytes=2048)
        for item in items:
            queue.append(0, 1, item)
        entries = queue.read(ack_after, 2**30)
        if entries:
            queue.ack(entries[-1].end)
        queue.close()
        rest = DiskQueue(Path(directory), max_bytes=10**7, segment_bytes=2048)
        assert _payloads(rest) == items[len(entries) :]
        rest.close()
