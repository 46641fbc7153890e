"""One file's pipeline: its lines in, entries with labels and timestamps out.

Positions rule: a file's position may only pass a line once that line was
shipped or dropped. Stages that hold lines back (partial CRI/docker lines, a
multiline record in progress) report the start of what they hold, and
:meth:`FilePipeline.safe_offsets` never goes past it, so after a crash the held
lines are read again and re-assembled whole. Held records never span a rotation or a
copytruncate: when lines of a new file (device, inode) or of the emptied file
arrive, whatever the old content left held is handed on first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..tailer import Line
from .config import StageConfig, stage_options
from .containers import CriStage, DockerStage
from .extract import JsonStage, LogfmtStage, OutputStage, RegexStage, TimestampStage
from .labels import DropStage, LabelAllowStage, LabelDropStage, LabelsStage, StaticLabelsStage
from .multiline import MultilineStage
from .record import Record, Stage, StageMetrics

__all__ = ["FilePipeline", "build_stages"]

Identity = tuple[int, int]


_Factory = Callable[[Any, StageMetrics, int], Stage]
# name → stage from (options, metrics, the shipper's max_line_bytes)
_FACTORIES: dict[str, _Factory] = {
    "cri": CriStage,
    "docker": DockerStage,
    "multiline": MultilineStage,
    "json": lambda o, m, _: JsonStage(o, m),
    "logfmt": lambda o, m, _: LogfmtStage(o, m),
    "regex": lambda o, m, _: RegexStage(o, m),
    "timestamp": lambda o, m, _: TimestampStage(o, m),
    "output": lambda o, m, _: OutputStage(o, m),
    "labels": lambda o, m, _: LabelsStage(o, m),
    "static_labels": lambda o, m, _: StaticLabelsStage(o, m),
    "labeldrop": lambda o, m, _: LabelDropStage(o, m),
    "labelallow": lambda o, m, _: LabelAllowStage(o, m),
    "drop": lambda o, m, _: DropStage(o, m),
}


def build_stages(
    configs: Sequence[StageConfig], metrics: StageMetrics, max_line: int
) -> list[Stage]:
    """Stage objects for one file, from validated configuration."""
    return [_FACTORIES[config.name](stage_options(config), metrics, max_line) for config in configs]


class FilePipeline:
    """The stages of one tailed file, with the state they keep between reads."""

    def __init__(self, stages: list[Stage], identity: Identity, start_offset: int) -> None:
        self.stages = stages
        self._holders = [s for s in stages if type(s).held_start is not Stage.held_start]
        self.identity = identity
        self._end = start_offset  # end of the last line taken from the current file
        self._finished: dict[Identity, int] = {}  # old files, fully handed on

    def process(
        self, lines: Sequence[Line], labels: dict[str, str], stamps: Sequence[int], now: float
    ) -> list[Record]:
        """Run ``lines`` (one read of the file, in order) through the stages. With no
        lines this is a tick: records held past their wait time come out.

        ``stamps`` are the read times of the lines (see :mod:`edge.logs.readclock`),
        kept by lines that no stage timestamps; ``now`` is a monotonic clock.
        """
        out: list[Record] = []
        records: list[Record] = []
        end = self._end
        for i, line in enumerate(lines):
            identity = (line.device, line.inode)
            if identity != self.identity or line.end_offset <= end:
                # A new file (rotation) or this one emptied (copytruncate): what the old
                # content left held goes first, and offsets start again at zero.
                out += self._run(records, now)
                records = []
                out += self.release(now)
                if identity != self.identity:
                    if self.identity != (0, 0):  # (0, 0): there was no file yet
                        self._finished[self.identity] = end
                    self.identity = identity
                end = 0
            records.append(Record(line.text, labels, stamps[i], dict(labels), end, line.end_offset))
            end = line.end_offset
        self._end = end
        out += self._run(records, now)
        return out

    def _run(self, records: list[Record], now: float) -> list[Record]:
        for stage in self.stages:
            records = stage.run(records, now)
        return records

    def release(self, now: float) -> list[Record]:
        """Everything held, handed on as it is: the file ended (rotated or drained)
        or the stages are being replaced."""
        released: list[Record] = []
        for stage in self.stages:
            released = stage.run(released, now) + stage.release()
        return released

    def held_start(self) -> int | None:
        return min(
            (s for s in (h.held_start() for h in self._holders) if s is not None), default=None
        )

    def safe_offsets(self) -> dict[Identity, int]:
        """Per file, the offset up to which every line was handed on (or dropped):
        where its position may go once what was handed on is acknowledged."""
        offsets = self._finished
        self._finished = {}
        held = self.held_start()
        offsets[self.identity] = self._end if held is None else min(held, self._end)
        return offsets
