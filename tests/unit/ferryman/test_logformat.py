"""``--log-format json`` / ``FERRYMAN_LOG_FORMAT``: one JSON object per line, as log
collectors expect; ``--version`` from package metadata."""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ferryman import cli
from ferryman.errors import ConfigError
from ferryman.logformat import JsonFormatter, resolve

#: The tree under test: ``python -m ferryman`` run from there imports this ferryman.
ROOT = Path(__file__).parents[3]
RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _lines(emit: object) -> list[dict[str, object]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ferryman.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        assert callable(emit)
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_per_line() -> None:
    def emit(log: logging.Logger) -> None:
        log.info("shipped %d lines\nof %s", 3, "app.log", extra={"job": "varlog"})
        try:
            raise ValueError("bad input")
        except ValueError:
            log.exception("cannot parse")

    info, error = _lines(emit)
    assert RFC3339_MS_UTC.match(str(info["time"]))
    assert info == {
        "time": info["time"],
        "level": "info",
        "logger": "ferryman.test.json",
        "message": "shipped 3 lines\nof app.log",
        "job": "varlog",
    }
    assert (error["level"], error["message"]) == ("error", "cannot parse")
    assert "Traceback" in str(error["exception"]) and "ValueError: bad input" in str(
        error["exception"]
    )


def test_the_time_is_utc_with_milliseconds() -> None:
    record = logging.makeLogRecord({"msg": "x", "levelname": "WARNING", "name": "n"})
    record.created, record.msecs = 1_764_100_800.0456, 45.6
    assert json.loads(JsonFormatter().format(record))["time"] == "2025-11-25T20:00:00.045Z"


def test_flag_then_environment_then_text() -> None:
    assert resolve(None, {}) == "text"
    assert resolve(None, {"FERRYMAN_LOG_FORMAT": "json"}) == "json"
    assert resolve("text", {"FERRYMAN_LOG_FORMAT": "json"}) == "text"
    with pytest.raises(ConfigError, match="FERRYMAN_LOG_FORMAT: 'xml' is not one of"):
        resolve(None, {"FERRYMAN_LOG_FORMAT": "xml"})


@pytest.mark.parametrize(
    "command",
    [["worker", "loki"], ["edge", "logs"], ["edge", "metrics"], ["dlq", "replay"]],
)
def test_every_long_running_command_takes_the_flag(command: list[str]) -> None:
    args = cli.build_parser().parse_args([*command, "--config", "/c.yml", "--log-format", "json"])
    assert args.log_format == "json"


@pytest.mark.parametrize(
    ("flag", "env"), [(["--log-format", "json"], {}), ([], {"FERRYMAN_LOG_FORMAT": "json"})]
)
def test_a_process_logs_json_lines(tmp_path: Path, flag: list[str], env: dict[str, str]) -> None:
    config = tmp_path / "loki.yaml"
    config.write_text("kafka: {input_topic: t, max_poll_records: 0}\nconfig: {url: 3}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ferryman", "worker", "loki", "--config", str(config), *flag],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(line["level"], line["logger"]) for line in lines] == [("error", "ferryman.worker")]
    assert "kafka.max_poll_records" in str(lines[0]["message"])
    assert RFC3339_MS_UTC.match(str(lines[0]["time"]))


def test_a_bad_format_in_the_environment_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ferryman", "worker", "loki", "--config", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env={**os.environ, "FERRYMAN_LOG_FORMAT": "xml"},
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == "ferryman: FERRYMAN_LOG_FORMAT: 'xml' is not one of text, json\n"


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"ferryman {importlib.metadata.version('ferryman')}\n"
