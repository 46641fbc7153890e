"""Read-time stamps survive a restart: the same line gets the same timestamp."""

from __future__ import annotations

import random

from edge.logs.positions import Position, Positions
from edge.logs.readclock import Anchor, ReadClock
from edge.logs.tailer import Line

NOW = 1_700_000_000_000_000_000


def _lines(ends: list[int], identity: tuple[int, int] = (1, 7)) -> list[Line]:
    return [Line(f"line ending {e}", e, *identity, False) for e in ends]


def test_stamps_increase_within_a_file_and_never_go_back() -> None:
    clock = ReadClock()
    first = clock.stamps(_lines([10, 25, 40]), NOW)
    assert first == [NOW, NOW + 15, NOW + 30]
    # A later read with a clock that went backwards still stamps after the last one.
    second = clock.stamps(_lines([55, 70]), NOW - 10**9)
    assert second[0] > first[-1] and second[1] - second[0] == 15
    assert clock.unsaved


def test_a_restart_stamps_re_read_lines_as_before(tmp_path) -> None:
    rng = random.Random(4)
    ends, offset = [], 0
    for _ in range(200):
        offset += rng.randrange(1, 300)
        ends.append(offset)
    clock = ReadClock()
    before = []
    for i in range(0, 200, 37):  # several reads, several anchors
        before += clock.stamps(_lines(ends[i : i + 37]), NOW + i * 10**6)
    clock.acknowledged((1, 7), ends[73])  # the first lines are in Kafka
    positions = Positions(tmp_path / "positions.json")
    positions.set(
        Position(
            "/var/log/a.log",
            1,
            7,
            ends[73],
            stamps=tuple((a.start, a.end, a.ts) for a in clock.pending((1, 7))),
        )
    )
    positions.save()

    loaded = Positions(tmp_path / "positions.json").get(1, 7)
    assert loaded is not None
    restarted = ReadClock({(1, 7): [Anchor(*s) for s in loaded.stamps]})
    # Read again from the saved offset, in differently sized reads, a day later.
    again = []
    for i in range(74, 200, 50):
        again += restarted.stamps(_lines(ends[i : min(i + 50, 200)]), NOW + 86_400 * 10**9)
    assert again == before[74:]
    # Lines past what was read before get fresh, later stamps.
    assert restarted.stamps(_lines([ends[-1] + 5]), NOW + 86_400 * 10**9)[0] >= NOW + 86_400 * 10**9


def test_emptied_file_drops_its_old_anchors_and_other_files_are_apart() -> None:
    clock = ReadClock()
    clock.stamps(_lines([100, 200]), NOW)
    clock.stamps(_lines([50], identity=(1, 8)), NOW)
    # copytruncate: offsets start again below what the anchors cover
    fresh = clock.stamps(_lines([30]), NOW + 10**9)
    assert fresh == [NOW + 10**9]
    assert [a.end for a in clock.pending((1, 7))] == [30]
    assert [a.end for a in clock.pending((1, 8))] == [50]
    clock.acknowledged((1, 7), 30)
    assert clock.pending((1, 7)) == []
