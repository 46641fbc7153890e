"""Exactly once from files into Elasticsearch, through kill -9s, a rename rotation and
a lost positions file.

200,000 numbered lines are written to four files, one renamed away midway and found
again under its new name (``__path__: <dir>/*.log*``), while the edge log shipper and
the ``elasticsearch_logs`` worker are killed with -9 eight times between them: while
lines are written, right after the rename, while Elasticsearch is running one of the
worker's bulk requests. Elasticsearch must then hold every line once. Then the shipper
loses its positions file and reads every file again from its start, under the names
they have now and with new read-time timestamps: Elasticsearch must still hold
200,000 documents, every re-read line answered 409 (its ``_id`` comes from the file's
identity and the line's end offset, carried in the ``ferryman.lines`` header).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from elasticsearch import Elasticsearch

from tests.integration.pipeline import (
    EdgeLogs,
    create_topics,
    free_port,
    topic_size,
    wait_for,
)

LINES = 200_000
FILES = 4
LINE_BYTES = 100  # newline included
WRITE_S = 40.0  # written at an even pace over this long
ROTATED = 1  # app-1.log is renamed to app-1.log.1 when half the lines are written
SINK = "elasticsearch_logs"


def _line(n: int, f: int) -> bytes:
    head = f"{n:06d} app-{f} GET /api/items/{n % 97} status=200 "
    return (head + "abcdefghij" * 10)[: LINE_BYTES - 1].encode() + b"\n"


def _number(message: str) -> int:
    return int(message[:6])


@dataclass
class Written:
    """Where each line went: the name of its file now, its end offset there, when."""

    name: list[str] = field(default_factory=lambda: [""] * LINES)
    end: list[int] = field(default_factory=lambda: [0] * LINES)
    at: list[float] = field(default_factory=lambda: [0.0] * LINES)


class Writer(threading.Thread):
    """Appends the lines round-robin in runs of 25, at an even pace over ``WRITE_S``,
    and renames app-1.log away when half are written (a new app-1.log follows)."""

    def __init__(self, directory: Path, t0: float) -> None:
        super().__init__(name="writer", daemon=True)
        self.directory = directory
        self.t0 = t0
        self.count = 0
        self.written = Written()
        self.sizes = {f"app-{f}.log": 0 for f in range(FILES)}
        self.rotated = threading.Event()
        self.rotated_at = 0.0
        self.error: BaseException | None = None

    def progress(self) -> float:
        return self.count / LINES

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.error = exc

    def _write(self) -> None:
        start = time.monotonic()
        n = 0
        while n < LINES:
            due = min(LINES, int((time.monotonic() - start) / WRITE_S * LINES) + 100)
            while n < due:
                f = (n // 25) % FILES
                run = [_line(i, f) for i in range(n, min(n + 25, LINES))]
                name = f"app-{f}.log"
                with (self.directory / name).open("ab") as out:
                    out.write(b"".join(run))
                for i, line in enumerate(run, n):
                    self.sizes[name] += len(line)
                    self.written.name[i] = name
                    self.written.end[i] = self.sizes[name]
                    self.written.at[i] = time.monotonic() - self.t0
                n += len(run)
                self.count = n
                if n >= LINES // 2 and not self.rotated.is_set():
                    old = self.directory / f"app-{ROTATED}.log"
                    old.rename(old.with_name(old.name + ".1"))
                    self.sizes[old.name] = 0
                    self.rotated_at = time.monotonic() - self.t0
                    self.rotated.set()
                    for i in range(n):  # its lines are in the renamed file now
                        if self.written.name[i] == old.name:
                            self.written.name[i] = old.name + ".1"
            time.sleep(0.02)


def _bulks(es_url: str, stream: str, since_ms: int) -> dict[str, tuple[int, float]]:
    """The bulk requests into ``stream`` Elasticsearch is running that began after
    ``since_ms`` (another test's, and those of a killed worker, do not count): task id
    → (documents, ms running). The client marks the task API a technical preview, a
    warning that fails tests: asked by hand."""
    tasks = httpx.get(
        f"{es_url}/_tasks",
        params={"actions": "indices:data/write/bulk", "detailed": "true"},
        timeout=5,
    ).json()
    out = {}
    for node, running in tasks["nodes"].items():
        for number, task in running["tasks"].items():
            description = task.get("description", "")
            if (
                task["action"] == "indices:data/write/bulk"
                and f"indices[{stream}]" in description
                and task["start_time_in_millis"] >= since_ms
            ):
                documents = int(description.partition("requests[")[2].partition("]")[0])
                out[f"{node}:{number}"] = (documents, task["running_time_in_nanos"] / 1e6)
    return out


def _positions_at_end(positions: Path, directory: Path) -> bool:
    """Whether the positions file has every file at its end (all acknowledged)."""
    try:
        files = json.loads(positions.read_text())["files"]
    except (FileNotFoundError, ValueError):
        return False
    offsets = {(p["device"], p["inode"]): p["offset"] for p in files}
    for path in directory.iterdir():
        stat = path.stat()
        if offsets.get((stat.st_dev, stat.st_ino)) != stat.st_size:
            return False
    return True


def _scan(es: Elasticsearch, stream: str) -> tuple[Counter[int], int]:
    """Every stored line's number, counted; and how many ``_id``s are by source."""
    es.indices.refresh(index=stream)
    numbers: Counter[int] = Counter()
    by_source = 0
    page = es.search(index=stream, scroll="2m", size=10_000, sort=["_doc"], source=["message"])
    scroll_id = page["_scroll_id"]
    try:
        while hits := page["hits"]["hits"]:
            for hit in hits:
                numbers[_number(hit["_source"]["message"])] += 1
                by_source += "." in hit["_id"]
            page = es.scroll(scroll_id=scroll_id, scroll="2m")
            scroll_id = page["_scroll_id"]
    finally:
        es.clear_scroll(scroll_id=scroll_id)
    return numbers, by_source


def _explain(what: str, numbers: list[int], written: Written) -> str:
    """``numbers`` as runs of consecutive lines of a file: offsets, when written."""
    out = [f"{len(numbers)} lines {what}:"]
    by_file: dict[str, list[int]] = {}
    for n in sorted(numbers):
        by_file.setdefault(written.name[n], []).append(n)
    for name, found in sorted(by_file.items()):
        runs: list[list[int]] = []
        for n in found:
            # The next line of a file ends one line after the last one ended.
            if runs and written.end[n] == written.end[runs[-1][-1]] + LINE_BYTES:
                runs[-1].append(n)
            else:
                runs.append([n])
        for run in runs[:20]:
            first, last = run[0], run[-1]
            out.append(
                f"  {name}: {len(run)} lines {first}..{last}, ending at "
                f"{written.end[first]}..{written.end[last]}, written at "
                f"t={written.at[first]:.2f}..{written.at[last]:.2f}s"
            )
        if len(runs) > 20:
            out.append(f"  {name}: {len(runs) - 20} runs more")
    return "\n".join(out)


def _verdict(numbers: Counter[int], written: Written) -> str:
    """Which lines Elasticsearch lacks and which it holds more than once, or ""."""
    missing = [n for n in range(LINES) if n not in numbers]
    twice = sorted(n for n, c in numbers.items() if c > 1)
    if not missing and not twice:
        return ""
    return (
        f"{numbers.total()} documents\n{_explain('missing', missing, written)}\n"
        f"{_explain('stored more than once', twice, written)}"
    )


def _indexing(es: Elasticsearch, stream: str) -> tuple[int, int]:
    """Documents Elasticsearch created in ``stream``, and creates it refused with 409,
    over its life: every worker's, killed or not."""
    stats = es.indices.stats(index=stream, metric="indexing")["_all"]["primaries"]["indexing"]
    return stats["index_total"], stats["index_failed_due_to_version_conflict"]


def _metric(port: int, name: str) -> float:
    """The sum of ``name``'s series on the shipper's /metrics; -1 while it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return -1.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def test_200k_lines_land_once_through_kills_rotation_and_a_lost_positions_file(
    stack, unique, tmp_path, processes, worker, es
):
    rng = random.Random(unique)
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 4))
    stream = f"logs-{unique}-default"
    es_url = stack("elasticsearch", "http")
    logs = tmp_path / "logs"
    logs.mkdir()
    positions = tmp_path / "positions.json"
    shipper_port = free_port()
    shipper = processes(
        EdgeLogs(
            tmp_path,
            {
                "global": {"external_labels": {"cluster": "alpha"}},
                "positions": {"filename": str(positions)},
                "scrape_configs": [
                    {
                        "job_name": "app",
                        "static_configs": [
                            {"labels": {"job": "app", "__path__": str(logs / "*.log*")}}
                        ],
                    }
                ],
                "ferryman": {
                    "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
                    "listen": f"127.0.0.1:{shipper_port}",
                    "host": "node-1",
                    "batch_wait": "200ms",
                    "rescan_interval": "300ms",
                },
            },
        )
    )
    # A dead member holds its partitions until its session ends: 6 s, not 10.
    sink = worker(
        SINK,
        unique,
        {"url": es_url, "data_stream": stream},
        kafka={"session_timeout_ms": 6000},
    )
    wait_for(lambda: _metric(shipper_port, "ferryman_files") >= 0, 30, "the shipper up")

    t0 = time.monotonic()
    timeline: list[str] = []
    writer = Writer(logs, t0)

    def note(event: str) -> None:
        timeline.append(f"t={time.monotonic() - t0:6.2f}s at {writer.progress():6.1%}: {event}")

    def kill_shipper(why: str) -> None:
        shipper.kill9()
        note(f"shipper killed ({why})")
        time.sleep(rng.uniform(0.1, 1.0))
        shipper.start()
        note("shipper started")

    sink_started_ms = [int(time.time() * 1000)]

    def kill_sink_mid_bulk() -> None:
        since, began = sink_started_ms[0], time.monotonic()

        def bulk() -> dict[str, tuple[int, float]]:
            # One just begun, so that it is still running when the kill lands; but polls
            # slow down while Elasticsearch is busy and may miss every beginning, and
            # bulks stop once the worker has caught up: after 2 s, any.
            young = 25 if time.monotonic() - began < 2 else float("inf")
            return {t: b for t, b in _bulks(es_url, stream, since).items() if b[1] < young}

        try:
            running = wait_for(bulk, 60, "a bulk request of the worker", interval=0.002)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nworker alive {sink.alive()}, ready {sink.ready()}, committed "
                f"{sink.committed()} of {topic_size(bootstrap, unique)}\n"
                + "\n".join(timeline)
                + f"\n{sink.output()[-3000:]}"
            ) from None
        sink.kill9()
        after = _bulks(es_url, stream, since)
        task, (documents, ms) = next(iter(running.items()))
        note(
            f"worker killed during a bulk request of {documents} documents, {ms:.0f} ms in "
            f"({'still' if task in after else 'no longer'} running after the kill; "
            f"waited {time.monotonic() - began:.1f}s for it)"
        )
        time.sleep(rng.uniform(0.1, 1.0))
        sink_started_ms[0] = int(time.time() * 1000)
        sink.start()
        note("worker started")

    def at(progress: float) -> Callable[[], bool]:
        def reached() -> bool:
            assert writer.error is None, writer.error
            return writer.progress() >= progress

        return reached

    writer.start()
    wait_for(at(rng.uniform(0.05, 0.15)), 60, "5-15% written", interval=0.01)
    kill_shipper("while writing")
    wait_for(at(rng.uniform(0.2, 0.3)), 60, "20-30% written", interval=0.01)
    kill_sink_mid_bulk()
    wait_for(writer.rotated.is_set, 60, "the rotation", interval=0.001)
    time.sleep(rng.uniform(0.0, 0.3))  # the shipper may or may not have seen the rename
    note(f"app-{ROTATED}.log renamed to app-{ROTATED}.log.1 at t={writer.rotated_at:.2f}s")
    kill_shipper("right after the rotation")
    kill_sink_mid_bulk()
    wait_for(at(rng.uniform(0.65, 0.75)), 60, "65-75% written", interval=0.01)
    kill_shipper("while writing")
    kill_sink_mid_bulk()
    # Early enough that lines still come for the worker's last bulks.
    wait_for(at(rng.uniform(0.8, 0.88)), 60, "80-88% written", interval=0.01)
    kill_shipper("while writing")
    kill_sink_mid_bulk()
    writer.join(120)
    assert writer.error is None, writer.error
    assert not writer.is_alive()
    note("every line written")
    assert sorted(p.name for p in logs.iterdir()) == [
        "app-0.log",
        "app-1.log",
        "app-1.log.1",
        "app-2.log",
        "app-3.log",
    ]
    assert sum(p.stat().st_size for p in logs.iterdir()) == LINES * LINE_BYTES

    def drained() -> bool:
        # Everything acknowledged by Kafka, and everything on the topic committed.
        return (
            _positions_at_end(positions, logs)
            and sink.alive()
            and sink.ready()
            and sink.committed() == topic_size(bootstrap, unique)
        )

    def why(exc: AssertionError) -> AssertionError:
        """``exc`` with what Elasticsearch holds and when each process was killed."""
        numbers, _ = _scan(es, stream)
        report = "\n".join(timeline)
        return AssertionError(f"{exc}\n{_verdict(numbers, writer.written)}\n{report}")

    try:
        wait_for(drained, 120, "every line shipped and the topic consumed", interval=0.5)
    except AssertionError as exc:
        raise why(exc) from None
    note("drained")
    first_pass_s = time.monotonic() - t0
    es.indices.refresh(index=stream)
    stored = es.count(index=stream)["count"]
    numbers, by_source = _scan(es, stream)
    report = "\n".join(timeline)
    verdict = _verdict(numbers, writer.written)
    assert not verdict, f"{verdict}\n{report}"
    assert stored == LINES, report
    assert by_source == LINES  # every _id from (cluster, source, offset)
    assert topic_size(bootstrap, sink.dead_letter_topic) == 0
    assert sink.metric("ferryman_lines_header_invalid_total") == 0
    created_es, refused_es = _indexing(es, stream)
    assert created_es == LINES
    # The kills mid-bulk made the worker send stored lines again: Elasticsearch said 409.
    assert refused_es > 0
    created_before = sink.metric("ferryman_documents_total", result="created")
    duplicates_before = sink.metric("ferryman_documents_total", result="duplicate")
    retries_before = sink.metric("ferryman_documents_total", result="retry")
    messages_before = topic_size(bootstrap, unique)

    # Part two: the positions file lost. Every file is read again from its start.
    assert shipper.terminate() == 0
    positions.unlink()
    logged = len(shipper.output())
    t1 = time.monotonic()
    shipper.start()
    sizes: list[int] = []

    def settled() -> bool:
        sizes.append(topic_size(bootstrap, unique))
        return (
            len(sizes) >= 3
            and sizes[-1] == sizes[-2] == sizes[-3] > messages_before
            and _positions_at_end(positions, logs)
            and sink.committed() == sizes[-1]
        )

    try:
        wait_for(settled, 120, "the re-read shipped and consumed", interval=1.0)
        reread_s = time.monotonic() - t1
        es.indices.refresh(index=stream)
        assert es.count(index=stream)["count"] == LINES
    except AssertionError as exc:
        raise why(exc) from None
    assert _metric(shipper_port, "ferryman_records_sent_total") == LINES
    output = shipper.output()[logged:]
    assert f"tailing {logs / f'app-{ROTATED}.log.1'} from offset 0 (new)" in output
    created = sink.metric("ferryman_documents_total", result="created") - created_before
    duplicates = sink.metric("ferryman_documents_total", result="duplicate") - duplicates_before
    retries = sink.metric("ferryman_documents_total", result="retry") - retries_before
    assert created == 0
    # A record refused for now is sent again whole, its stored lines answering 409 twice.
    assert duplicates == LINES if retries == 0 else duplicates >= LINES
    created_es_after, refused_es_after = _indexing(es, stream)
    assert (created_es_after, refused_es_after - refused_es) == (LINES, duplicates)
    assert topic_size(bootstrap, sink.dead_letter_topic) == 0
    print(
        f"\n{report}\nfirst pass {first_pass_s:.1f}s, {stored} documents, "
        f"{by_source} ids by source, {messages_before} messages on the topic; "
        f"the last worker counted {created_before:.0f} created, "
        f"{duplicates_before:.0f} duplicates, {retries_before:.0f} retries; Elasticsearch "
        f"created {created_es} and refused {refused_es} with 409 over every worker\n"
        f"re-read {reread_s:.1f}s, {sizes[-1] - messages_before} more messages, "
        f"{created:.0f} created, {duplicates:.0f} duplicates (409), {retries:.0f} retries"
    )
    assert sink.terminate() == 0
    # The stack's Elasticsearch has no data-stream REST module: the stream stays.
