"""Container runtime log formats: ``cri`` (containerd, CRI-O) and ``docker``
(json-file). Both split long lines into pieces; the pieces are joined here, per
stream (stdout and stderr interleave), within ``max_partial_lines`` pieces and
``max_partial_line_size`` characters: past a bound the joined part is handed on
and the rest continues as a new entry, so nothing is lost and memory stays
bounded. A line whose last piece does not come within ``max_partial_wait_time``
(a container killed mid-line) is handed on as it is. A line that is not in the
format passes through unchanged and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.logparse import parse_json

from .config import CriOptions
from .record import Record, Stage, StageMetrics
from .timestamps import parse_rfc3339

__all__ = ["CriStage", "DockerStage"]


@dataclass(slots=True)
class _Partial:
    first: Record
    pieces: list[str]
    size: int
    last_at: float

    def finish(self) -> Record:
        self.first.line = "".join(self.pieces)
        return self.first


class _Joining(Stage):
    def __init__(self, options: CriOptions, metrics: StageMetrics, max_line: int) -> None:
        super().__init__(metrics)
        self.max_pieces = options.max_partial_lines
        self.max_size = options.max_partial_line_size or max_line
        self.max_wait = options.max_partial_wait_time
        self.partials: dict[str, _Partial] = {}

    def join(
        self,
        stream: str,
        record: Record,
        content: str,
        partial: bool,
        out: list[Record],
        now: float,
    ) -> None:
        """The entry ``record`` (``content`` of ``stream``) ends a line unless
        ``partial``; complete lines go to ``out``."""
        pending = self.partials.get(stream)
        if pending is not None and (
            len(pending.pieces) >= self.max_pieces or pending.size + len(content) > self.max_size
        ):
            self.failed("partial_line_limit")
            out.append(self._finish(stream))
            pending = None
        if pending is None:
            record.line = content
            if not partial:
                out.append(record)
                return
            self.partials[stream] = _Partial(record, [content], len(content), now)
            return
        pending.pieces.append(content)
        pending.size += len(content)
        pending.last_at = now
        pending.first.end = record.end
        if not partial:
            out.append(self._finish(stream))

    def _finish(self, stream: str) -> Record:
        record = self.partials.pop(stream).finish()
        record.extracted[self.content_key] = record.line
        return record

    content_key = "content"

    def expire(self, now: float, out: list[Record]) -> None:
        """Hand on lines whose next piece did not come within the wait."""
        if self.partials:
            for stream in [s for s, p in self.partials.items() if now - p.last_at >= self.max_wait]:
                out.append(self._finish(stream))

    def held_start(self) -> int | None:
        return min((p.first.start for p in self.partials.values()), default=None)

    def release(self) -> list[Record]:
        held = sorted(self.partials, key=lambda s: self.partials[s].first.start)
        return [self._finish(stream) for stream in held]


class CriStage(_Joining):
    """``<RFC3339Nano time> <stdout|stderr> <flags> <content>``; flag ``P`` marks a piece
    continued by the next line of the same stream. Sets the timestamp (of the first
    piece), the ``stream`` label and extracts time, stream, flags and content."""

    name = "cri"

    def run(self, records: list[Record], now: float) -> list[Record]:
        out: list[Record] = []
        for record in records:
            parts = record.line.split(" ", 3)
            stamp = parse_rfc3339(parts[0]) if len(parts) >= 3 else None
            if stamp is None or parts[1] not in ("stdout", "stderr"):
                self.failed("unparsable_cri")
                out.append(record)
                continue
            time_text, stream, flags = parts[:3]
            content = parts[3] if len(parts) == 4 else ""
            record.timestamp_ns = stamp
            record.labels = {**record.labels, "stream": stream}
            record.extracted.update(time=time_text, stream=stream, flags=flags, content=content)
            self.join(stream, record, content, "P" in flags.split(":"), out, now)
        self.expire(now, out)
        return out


class DockerStage(_Joining):
    """json-file lines ``{"log": "...\\n", "stream": "stdout", "time": "..."}``; a
    ``log`` without its trailing newline is a piece of a longer line. Sets the
    timestamp, the ``stream`` label and extracts output, stream and timestamp."""

    name = "docker"
    content_key = "output"

    def run(self, records: list[Record], now: float) -> list[Record]:
        out: list[Record] = []
        for record in records:
            document = parse_json(record.line)
            log = document.get("log") if document is not None else None
            stream = document.get("stream") if document is not None else None
            time_text = document.get("time") if document is not None else None
            stamp = parse_rfc3339(time_text) if isinstance(time_text, str) else None
            if not isinstance(log, str) or not isinstance(stream, str) or stamp is None:
                self.failed("unparsable_docker")
                out.append(record)
                continue
            partial = not log.endswith("\n")
            content = log if partial else log[:-1]
            record.timestamp_ns = stamp
            record.labels = {**record.labels, "stream": stream}
            record.extracted.update(output=content, stream=stream, timestamp=time_text)
            self.join(stream, record, content, partial, out, now)
        self.expire(now, out)
        return out
