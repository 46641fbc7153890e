"""The identity rule, scene by scene, in process (Kafka acknowledgements simulated
with ``_acknowledged``): what each file is after a rotation, and where it is read
from. The random walks over the same operations are in test_tracker_walk.py."""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge.logs.batch import Batch
from edge.logs.shipper import LogShipper


class _Run:
    def __init__(self, root: Path, glob: str) -> None:
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.config = root / "edge.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "positions": {"filename": str(root / "positions.json")},
                    "scrape_configs": [
                        {
                            "job_name": "j",
                            "static_configs": [{"labels": {"__path__": str(self.logs / glob)}}],
                        }
                    ],
                    "ferryman": {"host": "node-1", "rotate_wait": "0s"},
                }
            )
        )
        self.shipper = LogShipper(self.config)
        self.shipped: list[tuple[str, str]] = []  # (filename label, line)

    def write(self, name: str, *lines: str) -> None:
        with (self.logs / name).open("a") as out:
            out.write("".join(line + "\n" for line in lines))

    def ship(self, ack: bool = True) -> None:
        batch = Batch()
        for _ in range(3):
            self.shipper._scan(batch)
            self.shipper._fill(batch)
        if ack:
            self.shipper._acknowledged(batch)
            for labels, entries in batch.streams.items():
                name = labels.split('filename="', 1)[1].split('"', 1)[0]
                self.shipped += [(os.path.basename(name), e.line) for e in entries]

    def restart(self) -> None:
        self.stop()
        self.shipper = LogShipper(self.config)

    def stop(self) -> None:
        for f in self.shipper.files.values():
            f.tailer.close()
        self.shipper.targets.close()

    def lines(self) -> list[str]:
        return [line for _, line in self.shipped]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[_Run]:
    made: list[_Run] = []

    def make(glob: str) -> _Run:
        made.append(_Run(tmp_path / str(len(made)), glob))
        return made[-1]

    yield make  # type: ignore[misc]
    for r in made:
        r.stop()


def test_a_file_rotated_while_down_is_known_under_its_new_name(run) -> None:
    """The issue's scene: ``*.log*`` matches the rotated name; the shipper restarts
    around the rotation; app.log.1 is the file it read, not a new one."""
    r = run("*.log*")
    r.write("app.log", *(f"a {i}" for i in range(5)))
    r.ship()
    r.stop()
    r.write("app.log", "a 5", "a 6")
    os.rename(r.logs / "app.log", r.logs / "app.log.1")
    r.write("app.log", "b 0")
    r.restart()
    r.ship()
    assert sorted(r.lines()) == sorted([f"a {i}" for i in range(7)] + ["b 0"])
    # It keeps the name it was first shipped under.
    assert ("app.log", "a 6") in r.shipped


def test_inode_reuse_after_delete_is_caught_by_the_fingerprint(run) -> None:
    r = run("*.log")
    r.write("app.log", "old 0", "old 1", "old 2")
    r.ship()
    r.stop()
    os.unlink(r.logs / "app.log")
    r.write("other.log", "new 0", "new 1", "new 2", "new 3")  # often the freed inode
    os.rename(r.logs / "other.log", r.logs / "app.log")
    r.restart()
    r.ship()
    assert r.lines() == ["old 0", "old 1", "old 2", "new 0", "new 1", "new 2", "new 3"]


def test_copytruncate_while_down_continues_in_the_copy(run) -> None:
    r = run("*.log*")
    r.write("app.log", "a 0", "a 1")
    r.ship()
    r.stop()
    r.write("app.log", "a 2", "a 3")
    shutil.copyfile(r.logs / "app.log", r.logs / "app.log.1")
    os.truncate(r.logs / "app.log", 0)
    r.write("app.log", "b 0")
    r.restart()
    r.ship()
    assert sorted(r.lines()) == ["a 0", "a 1", "a 2", "a 3", "b 0"]


def test_a_copy_of_a_file_being_read_waits_for_it(run) -> None:
    """copytruncate seen while running: the copy made before the original is emptied
    is not read while the original is; then it gives only what was not read."""
    r = run("*.log*")
    r.write("app.log", "a 0", "a 1")
    r.ship()
    r.write("app.log", "a 2")
    shutil.copyfile(r.logs / "app.log", r.logs / "app.log.1")
    r.ship()  # the copy is found, the original not emptied yet: both hold a 2
    os.truncate(r.logs / "app.log", 0)
    r.write("app.log", "b 0")
    r.ship()
    assert sorted(r.lines()) == ["a 0", "a 1", "a 2", "b 0"]


def test_compressed_rotations_are_never_read_as_text(run) -> None:
    r = run("*.log*")
    r.write("app.log", "a 0")
    with gzip.open(r.logs / "app.log.1.gz", "wt") as z:
        z.write("z 0\n")
    r.ship()
    assert r.lines() == ["a 0"]
    assert r.shipper.registry.value("ferryman_files_skipped_total", reason="compressed") == 1


def test_emptied_and_grown_past_the_position_between_two_reads(run) -> None:
    """copytruncate, then more lines than were read before the next read: the new
    head gives it away, so the new content is read from 0, once, and the copy goes
    on from where the old content was read up to."""
    r = run("*.log*")
    r.write("app.log", "a 0", "a 1")
    r.ship()
    r.write("app.log", "a 2")
    shutil.copyfile(r.logs / "app.log", r.logs / "app.log.1")
    os.truncate(r.logs / "app.log", 0)
    r.write("app.log", *(f"b {i}" for i in range(20)))
    batch = Batch()
    r.shipper._fill(batch)  # before any scan: the reader itself must notice
    r.shipper._acknowledged(batch)
    r.shipped += [("", e.line) for entries in batch.streams.values() for e in entries]
    r.ship()
    assert sorted(r.lines()) == sorted(["a 0", "a 1", "a 2"] + [f"b {i}" for i in range(20)])
