"""A file the running shipper followed through a rename is not mistaken for one
rotated while it was down: its lines in the batch in flight are read once."""

from __future__ import annotations

import os

import yaml

from edge.logs.batch import Batch
from edge.logs.positions import Position
from edge.logs.shipper import LogShipper


def test_lines_in_flight_of_a_renamed_file_are_not_drained_again(tmp_path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "positions": {"filename": str(tmp_path / "positions.json")},
                "scrape_configs": [
                    {
                        "job_name": "j",
                        "static_configs": [{"labels": {"__path__": str(logs / "*.log")}}],
                    }
                ],
            }
        )
    )
    shipper = LogShipper(config)
    app.write_text("".join(f"first {i}\n" for i in range(10)))
    batch = Batch()
    shipper._scan(batch)
    shipper._fill(batch)
    stat = os.stat(app)
    # Kafka acknowledged those ten lines.
    shipper.positions.set(Position(str(app), stat.st_dev, stat.st_ino, stat.st_size))

    batch = Batch()
    with app.open("a") as out:
        out.write("".join(f"second {i}\n" for i in range(5)))
    os.rename(app, logs / "app.log.1")
    app.write_text("".join(f"third {i}\n" for i in range(3)))
    for _ in range(3):  # the old file to its end, then the new one
        shipper._fill(batch)
    shipper._scan(batch)  # before the batch was acknowledged
    shipper._fill(batch)

    drained = dict(shipper.draining)
    for f in [*shipper.files.values(), *shipper.draining.values()]:
        f.tailer.close()
    shipper.targets.close()
    assert drained == {}
    lines = [e.line for entries in batch.streams.values() for e in entries]
    assert lines == [f"second {i}" for i in range(5)] + [f"third {i}" for i in range(3)]
