"""The shipper's side of pipeline stages, without Kafka: entries grouped by their
own label sets, and batch positions that never pass a held line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.logs.batch import Batch
from edge.logs.shipper import LogShipper
from ferryman.wire.loki import parse_labels

T = "2024-05-01T10:00:00.000000001Z"


Make = Callable[[list[dict[str, Any]] | None], LogShipper]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """Shippers over ``tmp_path/*.log``; their files are closed at teardown."""
    made: list[LogShipper] = []

    def build(stages: list[dict[str, Any]] | None) -> LogShipper:
        made.append(_shipper(tmp_path, stages))
        return made[-1]

    yield build
    for shipper in made:
        for f in shipper.files.values():
            f.tailer.close()


def _shipper(tmp_path: Path, stages: list[dict[str, Any]] | None) -> LogShipper:
    job: dict[str, Any] = {
        "job_name": "pods",
        "static_configs": [{"labels": {"__path__": str(tmp_path / "*.log")}}],
    }
    if stages is not None:
        job["pipeline_stages"] = stages
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "positions": {"filename": str(tmp_path / "positions.json")},
                "scrape_configs": [job],
                "ferryman": {"host": "node-1"},
            }
        )
    )
    return LogShipper(config)


def _reading(shipper: LogShipper, path: str) -> Any:
    """The file being read that was found at ``path``."""
    return next(f for f in shipper.files.values() if f.path == path)


def _append(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def test_no_stages_keeps_the_fast_path(tmp_path: Path, make: Make) -> None:
    _append(tmp_path / "a.log", "one", "two")
    shipper = make(None)
    batch = Batch()
    shipper._scan(batch)
    assert _reading(shipper, str(tmp_path / "a.log")).pipeline is None
    shipper._fill(batch)
    assert [e.line for entries in batch.streams.values() for e in entries] == ["one", "two"]
    assert list(batch.ends.values()) == [(str(tmp_path / "a.log"), 8)]


def test_entries_grouped_by_label_set_and_positions_stop_at_held_lines(
    tmp_path: Path, make: Make
) -> None:
    log = tmp_path / "0.log"
    _append(
        log,
        f"{T} stdout F level=info ok",
        f"{T} stderr F level=error bad",
        f"{T} stdout F level=debug noise",
    )
    held = f"{T} stdout P level=info par"
    _append(log, held)
    shipper = make(
        [
            {"cri": {}},
            {"logfmt": {"mapping": {"level": ""}}},
            {"drop": {"source": "level", "value": "debug", "drop_counter_reason": "debug"}},
            {"labels": {"level": ""}},
        ]
    )
    batch = Batch()
    shipper._scan(batch)
    shipper._fill(batch)
    streams = {
        (parse_labels(k)["stream"], parse_labels(k)["level"]): [e.line for e in v]
        for k, v in batch.streams.items()
    }
    assert streams == {
        ("stdout", "info"): ["level=info ok"],
        ("stderr", "error"): ["level=error bad"],
    }
    assert batch.lines == 2
    size = log.stat().st_size
    assert list(batch.ends.values()) == [(str(log), size - len(held) - 1)]
    assert shipper.registry.value("ferryman_lines_dropped_total", reason="debug") == 1

    _append(log, f"{T} stdout F tial")
    shipper._fill(batch)
    assert (
        batch.streams[
            '{filename="' + str(log) + '", host="node-1", job="pods", '
            'level="info", stream="stdout"}'
        ][-1].line
        == "level=info partial"
    )
    assert list(batch.ends.values()) == [(str(log), log.stat().st_size)]


def test_only_dropped_lines_still_make_positions_due(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "a.log"
    _append(log, "noise 1", "noise 2")
    shipper = make([{"drop": {"expression": "noise"}}])
    batch = Batch()
    shipper._scan(batch)
    shipper._fill(batch)
    assert batch.lines == 0 and batch.streams == {}
    assert list(batch.ends.values()) == [(str(log), log.stat().st_size)]
    assert shipper._ship(batch)  # no Kafka needed: nothing to produce
    assert shipper.positions.all()[0].offset == log.stat().st_size


def test_stage_failures_are_counted_never_raised(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "a.log"
    _append(log, "not json", '{"ts": "yesterday"}')
    shipper = make(
        [
            {"json": {"expressions": {"ts": ""}}},
            {"timestamp": {"source": "ts", "format": "RFC3339"}},
        ]
    )
    batch = Batch()
    shipper._scan(batch)
    shipper._fill(batch)
    assert batch.lines == 2
    assert (
        shipper.registry.value("ferryman_errors_total", error_type="unparsable_json", stage="json")
        == 1
    )
    assert (
        shipper.registry.value(
            "ferryman_errors_total", error_type="unparsable_timestamp", stage="timestamp"
        )
        == 1
    )


def test_reload_with_other_stages_ships_what_the_old_ones_held(tmp_path: Path, make: Make) -> None:
    log = tmp_path / "a.log"
    _append(log, "S1", "  more")
    shipper = make([{"multiline": {"firstline": "^S"}}])
    batch = Batch()
    shipper._scan(batch)
    shipper._fill(batch)
    assert batch.lines == 0
    replaced = make([{"static_labels": {"x": "y"}}])
    shipper.config = replaced.config
    shipper.targets.reconfigure(replaced.config)
    shipper._scan(batch)
    assert [e.line for v in batch.streams.values() for e in v] == ["S1\n  more"]
    assert list(batch.ends.values()) == [(str(log), log.stat().st_size)]
