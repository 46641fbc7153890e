"""The file tracker over random walks of write, rename, copytruncate, delete,
re-create, compress and crash/restart, driven in process: Kafka is the list of lines
of acknowledged batches, a crash drops the shipper and its batch in flight.

Every line is unique (``<generation> <seq>``; a generation is one content of one
file, from its creation or truncation). The oracle: no line twice, lines of a
generation in order, and a line missing only if its content was destroyed (deleted,
emptied with no copy the glob matches, compressed with decompression off) before it
was acknowledged. The real-Kafka, real-kill version of this walk is
tests/integration/edge/test_logs_identity.py.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.logs.batch import Batch
from edge.logs.shipper import LogShipper


@dataclass
class _Content:
    """What is in one file on disk: its generation's lines, in order."""

    generation: str
    lines: list[str] = field(default_factory=list)


class _Walk:
    def __init__(self, root: Path, glob: str, decompress: bool) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.glob = glob
        self.decompress = decompress
        self.config = root / "edge.yaml"
        job: dict[str, Any] = {
            "job_name": "files",
            "static_configs": [{"labels": {"__path__": str(self.logs / glob)}}],
        }
        if decompress:
            job["decompression"] = {"enabled": True, "initial_delay": "0s"}
        self.config.write_text(
            yaml.safe_dump(
                {
                    "positions": {"filename": str(root / "positions.json")},
                    "scrape_configs": [job],
                    "ferryman": {"host": "node-1", "rotate_wait": "0s", "batch_bytes": 400},
                }
            )
        )
        self.files: dict[str, _Content] = {}  # name → content
        self.kafka: list[str] = []
        self.allowed_lost: set[str] = set()
        self.written = 0
        self.generations = 0
        self.shipper: LogShipper | None = LogShipper(self.config)
        self.batch = Batch()
        self.log: list[str] = []

    # ---- the shipper ---------------------------------------------------------------

    def step(self, ack: bool = True) -> None:
        if self.shipper is None:
            return
        self.shipper._scan(self.batch)
        for _ in range(3):
            self.shipper._fill(self.batch)
        if ack and self.batch.pending():
            self.shipper._acknowledged(self.batch)
            self.kafka += [e.line for entries in self.batch.streams.values() for e in entries]
            self.batch = Batch()

    def crash(self) -> None:
        if self.shipper is not None:
            for f in self.shipper.files.values():
                f.tailer.close()
            self.shipper.targets.close()
        self.shipper, self.batch = None, Batch()

    def restart(self) -> None:
        if self.shipper is None:
            self.shipper = LogShipper(self.config)

    # ---- the files -----------------------------------------------------------------

    def matched(self, name: str) -> bool:
        if name.endswith(".gz"):
            return self.decompress and self.glob == "*.log*"
        return name.endswith(".log") or self.glob == "*.log*"

    def _new(self, name: str) -> None:
        self.generations += 1
        self.files[name] = _Content(f"g{self.generations}")
        (self.logs / name).write_bytes(b"")

    def write(self, name: str, count: int) -> None:
        if name not in self.files:
            self._new(name)
        content = self.files[name]
        new = [f"{content.generation} {len(content.lines) + i}" for i in range(count)]
        content.lines += new
        self.written += count
        with (self.logs / name).open("a") as out:
            out.write("".join(line + "\n" for line in new))

    def destroy(self, content: _Content) -> None:
        shipped = set(self.kafka)
        self.allowed_lost.update(line for line in content.lines if line not in shipped)

    def _shift(self, name: str) -> None:
        """Make room for a new ``name.1``: ``name.k`` becomes ``name.k+1``."""
        numbered = sorted(
            (
                int(n.rsplit(".", 1)[1])
                for n in self.files
                if n.startswith(name + ".") and n.rsplit(".", 1)[1].isdigit()
            ),
            reverse=True,
        )
        for k in numbered:
            os.rename(self.logs / f"{name}.{k}", self.logs / f"{name}.{k + 1}")
            self.files[f"{name}.{k + 1}"] = self.files.pop(f"{name}.{k}")

    def _renamed(self, content: _Content, new_name: str) -> None:
        """A file renamed to a name the glob does not match is followed (while running)
        or found again (after a restart) only if the shipper knew it: here, if a line
        of it was acknowledged. One it never saw is out of reach (as for Promtail)."""
        shipped = set(self.kafka)
        if not self.matched(new_name) and not any(line in shipped for line in content.lines):
            self.destroy(content)

    def rename(self, name: str) -> None:
        """logrotate ``create``: name → name.1 (older ones shifted), a new empty name."""
        if name not in self.files:
            return
        self._shift(name)
        os.rename(self.logs / name, self.logs / f"{name}.1")
        self.files[f"{name}.1"] = self.files.pop(name)
        self._renamed(self.files[f"{name}.1"], f"{name}.1")
        self._new(name)

    def copytruncate(self, name: str) -> None:
        if name not in self.files:
            return
        self._shift(name)
        shutil.copyfile(self.logs / name, self.logs / f"{name}.1")
        copied = self.files[name]
        self.files[f"{name}.1"] = _Content(copied.generation, list(copied.lines))
        if not self.matched(f"{name}.1"):
            self.destroy(copied)
        with (self.logs / name).open("r+") as f:
            f.truncate(0)
        self.generations += 1
        self.files[name] = _Content(f"g{self.generations}")

    def delete(self, name: str) -> None:
        if name not in self.files:
            return
        self.destroy(self.files.pop(name))
        os.unlink(self.logs / name)

    def compress(self, name: str) -> None:
        if name not in self.files or name.endswith((".gz", ".log")):
            return
        self.generations += 1
        packed = f"{name.split('.')[0]}.log.z{self.generations}.gz"
        with (self.logs / name).open("rb") as raw, gzip.open(self.logs / packed, "wb") as z:
            shutil.copyfileobj(raw, z)
        content = self.files.pop(name)
        self.files[packed] = content
        if not self.matched(packed):
            self.destroy(content)
        os.unlink(self.logs / name)

    # ---- the oracle ----------------------------------------------------------------

    def check(self) -> None:
        assert len(self.kafka) == len(set(self.kafka)), "a line was shipped twice"
        last: dict[str, int] = {}
        for line in self.kafka:
            generation, seq = line.split()
            assert int(seq) > last.get(generation, -1), f"{line} out of order"
            last[generation] = int(seq)
        every = {line for content in self._all_contents() for line in content.lines}
        missing = (every | self._written_lines) - set(self.kafka) - self.allowed_lost
        assert not missing, f"lost {sorted(missing)[:10]} ({len(missing)})"

    def _all_contents(self) -> list[_Content]:
        return list(self.files.values())

    @property
    def _written_lines(self) -> set[str]:
        return self.__dict__.setdefault("_every", set())


def _run(walk: _Walk, rng: random.Random, ops: int, destroying: bool) -> None:
    names = ["app0.log", "app1.log"]
    every: set[str] = walk._written_lines
    for _ in range(ops):
        name = rng.choice(names)
        choice = rng.random()
        if choice < 0.35:
            before = set(walk.files.get(name, _Content("")).lines)
            walk.write(name, rng.randint(1, 30))
            every.update(set(walk.files[name].lines) - before)
            walk.log.append(f"write {name}")
        elif choice < 0.45:
            walk.rename(name)
            walk.log.append(f"rename {name}")
        elif choice < 0.55:
            walk.copytruncate(name)
            walk.log.append(f"copytruncate {name}")
        elif choice < 0.60 and destroying:
            target = rng.choice([n for n in walk.files if n.startswith(name)] or [name])
            walk.delete(target)
            walk.log.append(f"delete {target}")
        elif choice < 0.65 and destroying:
            walk.compress(f"{name}.{rng.choice((1, 2, 3))}")
            walk.log.append(f"compress {name}")
        elif choice < 0.72:
            walk.crash()
            walk.log.append("crash")
        elif choice < 0.80:
            walk.restart()
            walk.log.append("restart")
        else:
            walk.step(ack=rng.random() < 0.8)
            walk.log.append("step")
    walk.restart()
    for name in names:
        walk.write(name, 3)
        every.update(walk.files[name].lines[-3:])
    for _ in range(500):  # until nothing more comes
        shipped = len(walk.kafka)
        walk.step()
        if len(walk.kafka) == shipped and walk.shipper is not None:
            walk.step()  # files closed after rotate_wait give their last lines here
            if len(walk.kafka) == shipped:
                break
    walk.crash()


@pytest.mark.parametrize("seed", range(int(os.environ.get("WALK_SEEDS", "40"))))
@pytest.mark.parametrize(
    ("glob", "decompress", "destroying"),
    [
        ("*.log*", False, False),
        ("*.log*", False, True),
        ("*.log", False, True),
        ("*.log*", True, True),
    ],
    ids=["matching-no-delete", "matching", "not-matching", "decompress"],
)
def test_every_line_once(
    tmp_path: Path, seed: int, glob: str, decompress: bool, destroying: bool
) -> None:
    walk = _Walk(tmp_path, glob, decompress)
    try:
        _run(walk, random.Random(seed), 60, destroying)
        walk.check()
        if not destroying:
            assert not walk.allowed_lost
    except AssertionError:
        print("ops:", " | ".join(walk.log))
        raise
    assert walk.kafka, "nothing was shipped"
