"""Stamping a read by arithmetic gives what stamping it line by line gave.

``_LineByLine`` is the read clock as it was before runs of lines were stamped
together: the reference for :meth:`ReadClock.stamps`, :meth:`ReadClock.stamp_ends`
and :meth:`ReadClock.stamp_lines`, through reads, acknowledgements, restarts that
read lines again, copytruncate and reads of several files at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.logs.readclock import Anchor, ReadClock
from edge.logs.tailer import Line, Lines

Identity = tuple[int, int]
NOW = 1_700_000_000_000_000_000


class _LineByLine:
    def __init__(self, saved: dict[Identity, Sequence[Anchor]] | None = None) -> None:
        self.anchors: dict[Identity, list[Anchor]] = {
            identity: sorted(anchors, key=lambda a: a.start)
            for identity, anchors in (saved or {}).items()
        }
        self.unsaved = False
        self._last_ts = max(
            (a.ts + a.end - a.start for anchors in self.anchors.values() for a in anchors),
            default=0,
        )

    def stamps(self, lines: Sequence[Line], now_ns: int) -> list[int]:
        out: list[int] = []
        open_anchor: Anchor | None = None
        open_identity: Identity | None = None
        for line in lines:
            identity = (line.device, line.inode)
            anchor = self._covering(identity, line.end_offset)
            if anchor is None:
                if (
                    open_anchor is not None
                    and open_identity == identity
                    and line.end_offset > open_anchor.end
                ):
                    open_anchor = Anchor(open_anchor.start, line.end_offset, open_anchor.ts)
                    self.anchors[identity][-1] = open_anchor
                else:
                    start = line.end_offset - 1
                    ts = max(now_ns, self._last_ts + 1) - 1
                    open_anchor, open_identity = Anchor(start, line.end_offset, ts), identity
                    self._open(identity, open_anchor)
                anchor = open_anchor
            stamp = anchor.ts + (line.end_offset - anchor.start)
            self._last_ts = max(self._last_ts, stamp)
            out.append(stamp)
        return out

    def _covering(self, identity: Identity, end: int) -> Anchor | None:
        for anchor in reversed(self.anchors.get(identity, ())):
            if anchor.start < end <= anchor.end:
                return anchor
            if anchor.end < end:
                return None
        return None

    def _open(self, identity: Identity, anchor: Anchor) -> None:
        anchors = self.anchors.setdefault(identity, [])
        if anchors and anchors[-1].end >= anchor.end:
            anchors.clear()
        anchors.append(anchor)
        self.unsaved = True

    def acknowledged(self, identity: Identity, offset: int) -> None:
        anchors = self.anchors.get(identity)
        if anchors:
            self.anchors[identity] = [a for a in anchors if a.end > offset]


IDENTITIES = [(1, 7), (1, 8)]
spans = st.lists(st.integers(1, 400), min_size=1, max_size=40)


def _same(fast: ReadClock, slow: _LineByLine) -> None:
    assert {k: v for k, v in fast.anchors.items() if v} == {
        k: v for k, v in slow.anchors.items() if v
    }
    assert fast.unsaved == slow.unsaved


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_stamps_match_line_by_line(data: st.DataObject) -> None:
    files = {identity: list(accumulate(data.draw(spans))) for identity in IDENTITIES}
    read_to = dict.fromkeys(IDENTITIES, 0)  # lines handed out per file
    acked = dict.fromkeys(IDENTITIES, 0)  # lines in Kafka per file
    fast, slow = ReadClock(), _LineByLine()
    now = NOW
    for _ in range(data.draw(st.integers(1, 12))):
        now += data.draw(st.integers(-(10**9), 10**9))
        action = data.draw(
            st.sampled_from(["read", "read", "mixed", "ack", "restart", "copytruncate"])
        )
        identity = data.draw(st.sampled_from(IDENTITIES))
        ends = files[identity]
        if action == "read" and read_to[identity] < len(ends):
            count = data.draw(st.integers(1, len(ends) - read_to[identity]))
            run = ends[read_to[identity] : read_to[identity] + count]
            start = ends[read_to[identity] - 1] if read_to[identity] else 0
            read_to[identity] += count
            api = data.draw(st.sampled_from(["stamps", "stamp_ends", "stamp_lines"]))
            rows = [Line("x", end, *identity, False) for end in run]
            if api == "stamps":
                got = fast.stamps(rows, now)
            elif api == "stamp_ends":
                got = fast.stamp_ends(identity, run, now)
            else:
                spans_of_run = [b - a for a, b in zip([start, *run], run, strict=False)]
                got = fast.stamp_lines(Lines(["x"] * count, spans_of_run, start, *identity), now)
            assert got == slow.stamps(rows, now)
        elif action == "mixed":
            rows = []
            for which in data.draw(st.lists(st.sampled_from(IDENTITIES), max_size=6)):
                if read_to[which] < len(files[which]):
                    rows.append(Line("x", files[which][read_to[which]], *which, False))
                    read_to[which] += 1
            assert fast.stamps(rows, now) == slow.stamps(rows, now)
        elif action == "ack" and read_to[identity]:
            acked[identity] = data.draw(st.integers(acked[identity], read_to[identity]))
            offset = ends[acked[identity] - 1] if acked[identity] else 0
            fast.acknowledged(identity, offset)
            slow.acknowledged(identity, offset)
        elif action == "restart":
            saved = {k: list(v) for k, v in slow.anchors.items()}
            fast, slow = ReadClock(saved), _LineByLine(saved)
            read_to = dict(acked)  # what Kafka did not take is read again
        elif action == "copytruncate":
            files[identity] = list(accumulate(data.draw(spans)))
            read_to[identity] = acked[identity] = 0
        _same(fast, slow)


def test_a_read_past_the_anchors_is_one_anchor() -> None:
    clock = ReadClock()
    stamps = clock.stamp_lines(Lines(["a", "bb", "ccc"], [2, 3, 4], 10, 1, 7), NOW)
    assert stamps == [NOW, NOW + 3, NOW + 7]
    assert clock.pending((1, 7)) == [Anchor(11, 19, NOW - 1)]
    assert clock.stamp_lines(Lines([], [], 19, 1, 7), NOW) == []
