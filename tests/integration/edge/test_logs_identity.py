"""Every line written to a log file reaches Kafka exactly once, in order, whatever
happens to the file: a seeded random walk of writes, rotations by rename and by
copytruncate, deletes, re-creates (often on the freed inode), compression and kill -9
of the shipper, over real files, a real shipper process and the real Kafka, checked
against a model of the files (:mod:`tests.integration.edge.logwalk`).

The oracle reads line contents only (``<generation> <seq>``), never labels: a file
found under a new name keeps the labels it was first shipped with. The topic has one
partition, so Kafka holds one order. Checks, at every settle and at the end:

1. Every line in Kafka is a line that was written (not a piece of one, not the
   bytes of a compressed file read as text).
2. No line is in Kafka twice, but for the one at-least-once gap positions have by
   design: the last batch of a shipper killed with -9 right after producing it may
   have been acknowledged before its positions were saved, and is then shipped
   again. A copy is excused when the copy before it was in such a batch.
3. Within a generation, lines first arrive in increasing seq order.
4. Every line written arrives, but for lines whose content was destroyed before
   Kafka had them: at each op that destroys content the test reads the topic up to
   its end offset and allows the lines not in it to be lost. Destroying: a delete;
   the truncate of a copytruncate whose copy the glob does not match; compression
   without decompression (a compressed file is never read as text). Not destroying:
   a rename (the shipper follows the inode while running and finds the file in the
   same directory after a restart); a copytruncate whose copy the glob matches;
   compression with decompression on (the compressed file is read once, from where
   its original was read up to). A rename hides content in one case: to a name the
   glob does not match, of a file the shipper cannot know yet (it was down, or had
   not been up with the file for :data:`DISCOVERED_AFTER`) and of which Kafka has
   no line.

A failure shows the variant, the seed, the walk's ops and the shipper's output. A
seed replays the same ops, not the same timings: ``FERRYMAN_WALK_SEEDS=7,8`` runs
other seeds.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.edge.logwalk import (
    Content,
    Disk,
    Topic,
    by_generation,
    disorder,
    line,
    ranges,
    unwritten,
)
from tests.integration.pipeline import EdgeLogs, Process, create_topics, free_port

#: chosen so that every variant's walk kills the shipper at least twice and rotates,
#: copytruncates and (where it may) compresses
SEEDS = [int(s) for s in os.environ.get("FERRYMAN_WALK_SEEDS", "1,21,26,27").split(",")]
OPS_PER_WALK = 40
BASES = ("app0.log", "app1.log")
#: a shipper sends a batch batch_wait (100 ms) or more after the previous one was
#: acknowledged, so the messages of one batch lie this close to its newest one
BATCH_SPREAD_MS = 50
#: a shipper saves positions this soon after producing a batch (acks and an fsync
#: take milliseconds here): a kill -9 later than that re-ships nothing
SAVE_WITHIN_MS = 2000
#: a file under a matched name this long while the shipper is up is known to it (5
#: rescan intervals)
DISCOVERED_AFTER = 1.0
#: a killed shipper's last requests have reached Kafka after this long
KILL_SETTLE = 0.3
SETTLE_TIMEOUT = 20.0

ALL_OPS = {
    "write": 30,
    "pause": 25,
    "rotate": 8,
    "copytruncate": 6,
    "compress": 4,
    "delete_rotated": 4,
    "delete_base": 3,
    "kill": 10,
    "restart": 15,
    "settle": 3,
}
DESTROYING = ("compress", "delete_rotated", "delete_base")


@dataclass(frozen=True)
class Variant:
    name: str
    pattern: str
    decompression: bool = False
    weights: dict[str, int] | None = None  # op → weight; ALL_OPS when None

    def ops(self) -> dict[str, int]:
        return dict(self.weights or ALL_OPS)

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)

    def __str__(self) -> str:
        decompression = " with decompression" if self.decompression else ""
        return f"{self.name} ({self.pattern}{decompression})"


VARIANTS = [
    # the glob matches rotated names (and compressed ones, never read as text)
    Variant("rotated-matched", "*.log*"),
    # only the base names: a rotated file is followed, or found again, by its inode
    Variant("rotated-unmatched", "*.log"),
    Variant("decompression", "*.log*", decompression=True),
    # nothing is destroyed, so every line must arrive
    Variant(
        "nothing-destroyed",
        "*.log*",
        weights={op: w for op, w in ALL_OPS.items() if op not in DESTROYING},
    ),
]


def _settings(
    variant: Variant, tmp: Path, logs: Path, bootstrap: str, topic: str, port: int
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "job_name": "walk",
        "static_configs": [{"labels": {"job": "walk", "__path__": str(logs / variant.pattern)}}],
    }
    if variant.decompression:
        job["decompression"] = {"enabled": True, "initial_delay": "0s"}
    return {
        "positions": {"filename": str(tmp / "positions.json")},
        "scrape_configs": [job],
        "ferryman": {
            "kafka": {"bootstrap_servers": bootstrap, "topic": topic},
            "listen": f"127.0.0.1:{port}",
            "host": "walk",
            "rescan_interval": "200ms",
            "batch_wait": "100ms",
            "rotate_wait": "1s",
        },
    }


@dataclass
class Run:
    """One shipper process: it produced the messages at offsets [start, end)."""

    start: int
    end: int | None = None  # when the next one starts
    killed_ms: int | None = None  # wall clock of its kill -9


class Walk:
    """The files, the shipper and the oracle's bookkeeping, one op at a time."""

    def __init__(
        self, variant: Variant, seed: int, disk: Disk, topic: Topic, shipper: Callable[[], Process]
    ) -> None:
        self.variant = variant
        self.seed = seed
        self.rng = random.Random(f"{variant.name}:{seed}")
        self.disk = disk
        self.topic = topic
        self._new_shipper = shipper
        self.shipper: Process | None = None
        self.last_shipper: Process | None = None
        self.started_at = 0.0
        self.killed_at = 0.0
        #: what each shipper process produced, every one but the last killed with -9
        self.runs: list[Run] = []
        self.allowed_lost: set[str] = set()
        self.lost_why: Counter[str] = Counter()  # allowed-lost lines by what lost them
        self.ops: list[str] = []
        self.done: Counter[str] = Counter()

    # ---- the walk --------------------------------------------------------------------

    def run(self, steps: int) -> None:
        """Some lines, a shipper, ``steps`` random ops; then a shipper up, a few more
        lines in each base file and a settle that wants them all."""
        for base in BASES:
            self.say(self.disk.write(base, self.rng.randint(1, 20)))
        self.start()
        for _ in range(steps):
            self.alive()
            op = self._choose()
            self.done[op] += 1
            getattr(self, op)()
        self.alive()
        if self.shipper is None:
            self.start()
        for base in BASES:
            self.say(self.disk.write(base, 3))
        self.settle(final=True)

    def say(self, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        self.ops.append(f"{len(self.ops):03d} {stamp} {text}")

    def _choose(self) -> str:
        running = self.shipper is not None
        rotated = [n for b in BASES for n in self.disk.rotated(b)]
        possible = {
            "write": True,
            "pause": True,
            "rotate": self._bases(),
            "copytruncate": self._bases(),
            "compress": any(not n.endswith(".gz") for n in rotated),
            "delete_rotated": rotated,
            "delete_base": self._bases(),
            "kill": running,
            "restart": not running,
            "settle": running,
        }
        weights = {op: w for op, w in self.variant.ops().items() if w and possible[op]}
        return self.rng.choices(list(weights), list(weights.values()))[0]

    def _bases(self) -> list[str]:
        return [b for b in BASES if b in self.disk.files]

    def write(self) -> None:
        r = self.rng.random()
        count = (
            self.rng.randint(1, 20)
            if r < 0.7
            else self.rng.randint(20, 200)
            if r < 0.95
            else self.rng.randint(500, 2000)
        )
        self.say(self.disk.write(self.rng.choice(BASES), count))

    def pause(self) -> None:
        seconds = self.rng.uniform(0, 0.3)
        self.say(f"pause {seconds * 1000:.0f} ms")
        time.sleep(seconds)

    def rotate(self) -> None:
        base = self.rng.choice(self._bases())
        moves = self.disk.rotate(base)
        self.say(f"rotate {base}: {_moves(moves)}new {base} {self.disk.files[base].generation}")
        for _, new in moves:
            self._renamed(new)

    def copytruncate(self) -> None:
        base = self.rng.choice(self._bases())
        moves, old = self.disk.copytruncate(base)
        note = ""
        if not self.variant.matches(f"{base}.1"):
            note = "; " + self._lose_unshipped(old, "truncated, copy unmatched")
        self.say(
            f"copytruncate {base}: {_moves(moves)}{old.generation} ({old.lines} lines) "
            f"copied to {base}.1, {base} now {self.disk.files[base].generation}{note}"
        )
        for _, new in moves:
            self._renamed(new)

    def compress(self) -> None:
        name = self.rng.choice(
            [n for b in BASES for n in self.disk.rotated(b) if not n.endswith(".gz")]
        )
        content = self.disk.compress(name)
        note = ""
        if not (self.variant.decompression and self.variant.matches(name + ".gz")):
            note = "; " + self._lose_unshipped(content, "compressed, not read")
        self.say(f"compress {name} ({content.generation}) to {name}.gz{note}")

    def delete_rotated(self) -> None:
        name = self.rng.choice([n for b in BASES for n in self.disk.rotated(b)])
        content = self.disk.delete(name)
        self.say(f"delete {name}: " + self._lose_unshipped(content, "deleted"))

    def delete_base(self) -> None:
        base = self.rng.choice(self._bases())
        content = self.disk.delete(base)
        self.say(f"delete {base}: " + self._lose_unshipped(content, "deleted"))

    def kill(self) -> None:
        assert self.shipper is not None
        self.shipper.kill9()
        self.shipper, self.killed_at = None, time.monotonic()
        self.runs[-1].killed_ms = int(time.time() * 1000)
        self.say("kill -9 the shipper")

    def restart(self) -> None:
        self.start()

    def start(self) -> None:
        """Start a shipper and wait until it serves /-/ready (it scans right after):
        a kill -9 before that would test nothing."""
        time.sleep(max(0.0, self.killed_at + KILL_SETTLE - time.monotonic()))
        offset = self.topic.end()
        if self.runs:
            self.runs[-1].end = offset
        self.runs.append(Run(offset))
        self.shipper = self.last_shipper = self._new_shipper()
        ready = f"http://{self.shipper.settings['ferryman']['listen']}/-/ready"
        deadline = time.monotonic() + 30
        while not _answers(ready):
            self.alive()
            if time.monotonic() > deadline:
                self.fail([f"shipper #{len(self.runs)} not ready after 30 s"])
            time.sleep(0.05)
        self.started_at = time.monotonic()
        self.say(f"started shipper #{len(self.runs)} (Kafka end offset {offset})")

    def alive(self) -> None:
        if self.shipper is not None and not self.shipper.alive():
            assert self.shipper.proc is not None
            self.fail([f"the shipper exited by itself (code {self.shipper.proc.returncode})"])

    # ---- the oracle ------------------------------------------------------------------

    def _lose_unshipped(self, content: Content, why: str) -> str:
        """``content`` is gone: its lines not in Kafka by now may never arrive."""
        self.topic.catch_up()
        lost = [t for t in content.texts() if t not in self.topic.count]
        self._allow(lost, why)
        return f"{len(lost)} of its {content.lines} lines not in Kafka: allowed lost ({why})"

    def _renamed(self, name: str) -> None:
        """A rename hides a file only from a shipper that cannot know it yet."""
        content = self.disk.files[name]
        if self.variant.matches(name) or not content.lines:
            return
        if (
            self.shipper is not None
            and time.monotonic() - max(content.born, self.started_at) >= DISCOVERED_AFTER
        ):
            return  # it has had the file under its matched name long enough
        self.topic.catch_up()
        if any(t in self.topic.count for t in content.texts()):
            return  # the shipper read it, so it knows it
        if self._allow(content.texts(), "renamed unmatched, unknown"):
            self.say(
                f"  {content.generation} renamed to {name} before the shipper could know it: "
                f"its {content.lines} lines allowed lost"
            )

    def _allow(self, lost: list[str], why: str) -> int:
        """Allow ``lost`` to be lost; returns how many were not allowed already."""
        new = len(set(lost) - self.allowed_lost)
        self.lost_why[why] += new
        self.allowed_lost.update(lost)
        return new

    def settle(self, final: bool = False) -> None:
        """Wait until Kafka has every line that must arrive, then check what it has."""
        if self.shipper is None:
            self.start()
        self.say("final settle" if final else "settle")
        harness = self.disk.mismatches()
        assert not harness, f"harness bug: the model is not the disk: {harness}"
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            self.alive()
            self.topic.catch_up()
            if not self.missing():
                break
            if time.monotonic() > deadline:
                self.fail(self.problems(), f" {SETTLE_TIMEOUT:.0f} s into a settle")
            time.sleep(0.2)
        problems = self.problems()
        if problems:
            self.fail(problems)

    def missing(self) -> list[str]:
        """Lines written, not in Kafka (as read so far), not allowed lost."""
        count = self.topic.count
        return [
            text
            for generation, lines in self.disk.written.items()
            for text in (line(generation, seq) for seq in range(lines))
            if text not in count and text not in self.allowed_lost
        ]

    def copies(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Lines in Kafka more than once: the offsets of the copies a kill -9 explains,
        and of those it does not (the first copy of a line is neither).

        A copy is explained when the copy before it was in the last batch of a
        shipper killed within :data:`SAVE_WITHIN_MS` of producing it, and it came
        after that shipper: that batch may have been acknowledged before its
        positions were saved."""
        last_batch: dict[int, int] = {}  # offset of one of its messages → end of run
        for run in self.runs:
            if run.end is None or run.killed_ms is None:
                continue
            produced = [e for e in self.topic.entries if run.start <= e.offset < run.end]
            newest = max((e.timestamp_ms for e in produced), default=0)
            if run.killed_ms - newest > SAVE_WITHIN_MS:
                continue  # its positions were saved long before the kill
            for e in produced:
                if e.timestamp_ms >= newest - BATCH_SPREAD_MS:
                    last_batch[e.offset] = run.end
        offsets: dict[str, list[int]] = defaultdict(list)
        for e in self.topic.entries:
            if self.topic.count[e.line] > 1:
                offsets[e.line].append(e.offset)
        explained: dict[str, list[int]] = defaultdict(list)
        unexplained: dict[str, list[int]] = defaultdict(list)
        for text, at in offsets.items():
            for before, offset in itertools.pairwise(at):
                by_kill = before in last_batch and offset >= last_batch[before]
                (explained if by_kill else unexplained)[text].append(offset)
        return explained, unexplained

    def problems(self) -> list[str]:
        """What breaks checks 1 to 4 now (see the module's docstring)."""
        topic, written = self.topic, self.disk.written
        out: list[str] = []
        strangers = unwritten(topic, written)
        if strangers:
            examples = ", ".join(f"{e.line[:60]!r} @{e.offset}" for e in strangers[:5])
            out.append(f"1. {len(strangers)} lines in Kafka were never written, e.g. {examples}")
        _, unexplained = self.copies()
        for generation, seqs in by_generation(unexplained).items():
            first = [topic.first[line(generation, s)] for s in seqs]
            again = [o for s in seqs for o in unexplained[line(generation, s)]]
            out.append(
                f"2. {generation}: {len(seqs)} lines more than once (seq {ranges(seqs)}); "
                f"first at offsets {ranges(first)}, again at {ranges(again)}"
            )
        out += [f"3. {problem}" for problem in disorder(topic, written)]
        for generation, seqs in by_generation(self.missing()).items():
            out.append(f"4. {generation}: {len(seqs)} lines not in Kafka (seq {ranges(seqs)})")
        return out

    def fail(self, problems: list[str], when: str = "") -> None:
        output = self.last_shipper.output() if self.last_shipper is not None else ""
        tail = "\n".join(output.splitlines()[-40:])
        pytest.fail(
            f"{self.variant}, seed {self.seed}: {len(problems)} problems{when} "
            f"after op {len(self.ops) - 1}\n"
            + "\n".join(problems[:40])
            + "\n\nops:\n"
            + "\n".join(self.ops)
            + f"\n\nlast shipper's output (all in {self.disk.directory.parent}):\n{tail}\n"
            + f"same ops again: FERRYMAN_WALK_SEEDS={self.seed} pytest "
            f"tests/integration/edge/test_logs_identity.py -k {self.variant.name}",
            pytrace=False,
        )

    def summary(self) -> str:
        total = sum(self.disk.written.values())
        never = len([t for t in self.allowed_lost if t not in self.topic.count])
        again = sum(map(len, self.copies()[0].values()))
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.lost_why.items()) if n)
        ops = ", ".join(f"{op} {n}" for op, n in sorted(self.done.items()))
        return (
            f"{self.variant}, seed {self.seed}: {total} lines written in "
            f"{len(self.disk.written)} generations; {len(self.allowed_lost)} allowed lost "
            f"({why or 'none'}), {never} of them never arrived; {again} shipped again "
            f"after a kill -9; {self.disk.inodes_reused} inodes reused; ops: {ops}"
        )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _moves(moves: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{a}→{b}, " for a, b in moves)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_line_once_in_order_through_rotation_and_kill_9(
    variant: Variant, seed: int, stack, unique, tmp_path, processes
):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    logs, staging = tmp_path / "logs", tmp_path / "staging"
    logs.mkdir()
    staging.mkdir()

    def shipper() -> Process:
        return processes(
            EdgeLogs(tmp_path, _settings(variant, tmp_path, logs, bootstrap, unique, free_port()))
        )

    topic = Topic(bootstrap, unique)
    walk = Walk(variant, seed, Disk(logs, staging, unique), topic, shipper)
    try:
        walk.run(OPS_PER_WALK)
        print(walk.summary())
        # A walk that never killed, rotated, copytruncated or compressed proves little.
        needed = {"kill", "rotate", "copytruncate"} | ({"compress"} & variant.ops().keys())
        assert all(walk.done[op] for op in needed), (
            f"a poor walk, pick other seeds: {walk.summary()}"
        )
        if variant.name == "nothing-destroyed":
            assert not walk.allowed_lost and not walk.missing(), walk.summary()
    finally:
        topic.close()
