"""``multiline``: join a record's lines (a stack trace after its first line).

A line matching ``firstline`` starts a record; the others are appended to the
record in progress of the same stream (label set). A record is handed on when
the next first line arrives, at ``max_lines`` lines or ``max_line_bytes``
characters, or ``max_wait_time`` after its last line arrived even if nothing
else comes (the shipper's loop ticks the pipeline). Lines are joined with
``\\n``; the record keeps the first line's timestamp, labels and extracted values.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import MultilineOptions, go_regex
from .record import Record, Stage, StageMetrics

__all__ = ["MultilineStage"]


@dataclass(slots=True)
class _Block:
    first: Record
    lines: list[str]
    size: int
    last_at: float

    def finish(self) -> Record:
        self.first.line = "\n".join(self.lines)
        return self.first


class MultilineStage(Stage):
    name = "multiline"

    def __init__(self, options: MultilineOptions, metrics: StageMetrics, max_line: int) -> None:
        super().__init__(metrics)
        self.firstline = go_regex(options.firstline)
        self.max_wait = options.max_wait_time
        self.max_lines = options.max_lines
        self.max_size = max_line
        self.blocks: dict[tuple[tuple[str, str], ...], _Block] = {}

    def run(self, records: list[Record], now: float) -> list[Record]:
        out: list[Record] = []
        blocks = self.blocks
        for record in records:
            key = tuple(sorted(record.labels.items()))
            block = blocks.get(key)
            if block is not None and self.firstline.search(record.line) is not None:
                out.append(blocks.pop(key).finish())
                block = None
            if block is None:
                block = blocks[key] = _Block(record, [record.line], len(record.line), now)
            else:
                block.lines.append(record.line)
                block.size += len(record.line) + 1
                block.first.end = record.end
                block.last_at = now
            if len(block.lines) >= self.max_lines or block.size >= self.max_size:
                out.append(blocks.pop(key).finish())
        if blocks:
            for key in [k for k, b in blocks.items() if now - b.last_at >= self.max_wait]:
                out.append(blocks.pop(key).finish())
        return out

    def held_start(self) -> int | None:
        return min((b.first.start for b in self.blocks.values()), default=None)

    def release(self) -> list[Record]:
        held = sorted(self.blocks.values(), key=lambda b: b.first.start)
        self.blocks.clear()
        return [block.finish() for block in held]
