"""The journald source's pure parts, and its reader against a stand-in journalctl.

The JSON lines are what journalctl 252 wrote for entries of a real journal file
(see tests/integration/edge/test_logs_journal.py for the real thing); the stand-in
journalctl is a script that prints such lines, so that restarts, malformed output
and the command line it was given can be checked deterministically.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.logs.journal import (
    JournalConfig,
    JournalEntry,
    JournalSource,
    MalformedEntry,
    cursor_time,
    journalctl_command,
    parse_entry,
)
from edge.logs.tailer import TRUNCATION_MARKER

CURSOR = (
    "s=401170b4cf644c95b689817240d6974f;i=1;b=0123456789abcdef0123456789abcdef;"
    "m=1;t=6611f7b04ff28;x=f5ef55d813f90592"
)
RECORDED = (
    '{"SYSLOG_IDENTIFIER":"app","_SYSTEMD_UNIT":"app.service","__CURSOR":"' + CURSOR + '",'
    '"_BOOT_ID":"0123456789abcdef0123456789abcdef","_HOSTNAME":"h1",'
    '"__REALTIME_TIMESTAMP":"1795637696069416","MESSAGE":"line 0","PRIORITY":"6",'
    '"__MONOTONIC_TIMESTAMP":"1"}'
)
BINARY = (
    '{"PRIORITY":"6","MESSAGE":[98,105,110,0,255,254,111,107],'
    '"__REALTIME_TIMESTAMP":"1795637698075159","__CURSOR":"' + CURSOR + '"}'
)
CONFIG = JournalConfig()


def entry(
    fields: dict[str, object], config: JournalConfig = CONFIG, **kwargs: int
) -> JournalEntry | None:
    base: dict[str, object] = {"__CURSOR": CURSOR, "__REALTIME_TIMESTAMP": "1000"}
    return parse_entry(json.dumps({**base, **fields}), config, **kwargs)


# --- parsing -------------------------------------------------------------------------


def test_a_recorded_entry() -> None:
    parsed = parse_entry(RECORDED.encode(), JournalConfig(labels={"job": "journal"}))
    assert parsed == JournalEntry(
        timestamp_ns=1795637696069416000,
        line="line 0",
        cursor=CURSOR,
        labels={
            "job": "journal",
            "__journal_syslog_identifier": "app",
            "__journal__systemd_unit": "app.service",
            "__journal__boot_id": "0123456789abcdef0123456789abcdef",
            "__journal__hostname": "h1",
            "__journal_priority": "6",
            "__journal_priority_keyword": "info",
        },
    )


def test_a_binary_message_is_decoded_with_invalid_bytes_replaced() -> None:
    parsed = parse_entry(BINARY, CONFIG)
    assert parsed is not None and parsed.line == "bin\x00\ufffd\ufffdok"


def test_repeated_fields_give_their_first_value() -> None:
    parsed = entry({"MESSAGE": ["first", "second"], "TAG": [[104, 105], "x"], "EMPTY": []})
    assert parsed is not None and parsed.line == "first"
    assert parsed.labels["__journal_tag"] == "hi"
    assert "__journal_empty" not in parsed.labels  # empty values are no labels


@pytest.mark.parametrize(
    "priority, keyword", [("0", "emerg"), ("3", "error"), ("4", "warning"), ("7", "debug")]
)
def test_priority_keywords(priority: str, keyword: str) -> None:
    parsed = entry({"MESSAGE": "m", "PRIORITY": priority})
    assert parsed is not None and parsed.labels["__journal_priority_keyword"] == keyword


def test_no_keyword_for_an_unknown_priority() -> None:
    parsed = entry({"MESSAGE": "m", "PRIORITY": "9"})
    assert parsed is not None and "__journal_priority_keyword" not in parsed.labels


def test_an_entry_without_message_is_skipped_unless_json() -> None:
    assert entry({"PRIORITY": "6"}) is None
    whole = entry({"PRIORITY": "6", "B": [0, 255]}, JournalConfig(json=True))
    assert whole is not None and whole.line == '{"B":"\\u0000\ufffd","PRIORITY":"6"}'


def test_json_mode_holds_every_field_but_the_address_fields() -> None:
    parsed = parse_entry(RECORDED, JournalConfig(json=True))
    assert parsed is not None
    assert json.loads(parsed.line) == {
        "SYSLOG_IDENTIFIER": "app",
        "_SYSTEMD_UNIT": "app.service",
        "MESSAGE": "line 0",
        "_BOOT_ID": "0123456789abcdef0123456789abcdef",
        "_HOSTNAME": "h1",
        "PRIORITY": "6",
    }


def test_long_lines_are_cut_at_a_character_boundary() -> None:
    parsed = entry({"MESSAGE": "é" * 100}, max_line_bytes=11)
    assert parsed is not None and parsed.truncated
    assert parsed.line == "é" * 5 + TRUNCATION_MARKER
    fits = entry({"MESSAGE": "é" * 5}, max_line_bytes=10)
    assert fits is not None and not fits.truncated


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '{"MESSAGE": "m", "__REALTIME_TIMESTAMP": "1"}',
        '{"MESSAGE": "m", "__CURSOR": "c"}',
        '{"MESSAGE": "m", "__CURSOR": "c", "__REALTIME_TIMESTAMP": "soon"}',
        b'{"MESSAGE": "\xff"}',
        '{"MESSAGE": [1, 300], "__CURSOR": "c", "__REALTIME_TIMESTAMP": "1"}',
    ],
)
def test_malformed_lines(raw: str | bytes) -> None:
    with pytest.raises(MalformedEntry):
        parse_entry(raw, CONFIG)


# --- the command line ----------------------------------------------------------------


def test_cursor_time() -> None:
    assert cursor_time(CURSOR) == pytest.approx(int("6611f7b04ff28", 16) / 1e6)
    assert cursor_time("garbage") is None
    assert cursor_time("s=1;i=2;q=3;t=5") is None
    assert cursor_time("s=1;t=zz") is None


def test_command_follows_after_a_recent_cursor() -> None:
    now = cursor_time(CURSOR) or 0.0
    command = journalctl_command(JournalConfig(), CURSOR, now=now + 60)
    assert command == [
        "journalctl",
        "--output=json",
        "--follow",
        "--no-tail",
        "--no-pager",
        "--all",
        "--merge",
        f"--after-cursor={CURSOR}",
    ]


def test_command_starts_at_max_age_without_a_cursor_or_with_an_older_one() -> None:
    now = cursor_time(CURSOR) or 0.0
    config = JournalConfig(max_age="1h")
    assert journalctl_command(config, None, now=now)[-1] == f"--since=@{int(now - 3600)}"
    assert journalctl_command(config, CURSOR, now=now + 7200)[-1] == (f"--since=@{int(now + 3600)}")
    assert journalctl_command(config, "not a cursor", now=now)[-1] == (
        f"--since=@{int(now - 3600)}"
    )
    assert journalctl_command(JournalConfig(max_age=0), None)[-1] == "--merge"  # all


def test_command_locations_and_filters() -> None:
    config = JournalConfig.model_validate(
        {
            "max_age": 0,
            "files": ["/j/a.journal", "/j/b.journal"],
            "units": ["ssh.service", "cron.service"],
            "matches": "_TRANSPORT=kernel + PRIORITY=3",
            "journalctl": "/opt/bin/journalctl",
        }
    )
    command = journalctl_command(config, None)
    assert command[0] == "/opt/bin/journalctl"
    assert command[7:] == [
        "--file=/j/a.journal",
        "--file=/j/b.journal",
        "--unit=ssh.service",
        "--unit=cron.service",
        "_TRANSPORT=kernel",
        "+",
        "PRIORITY=3",
    ]
    directory = JournalConfig(path=Path("/var/log/journal"), max_age=0)
    assert journalctl_command(directory, None)[7:] == ["--directory=/var/log/journal"]


# --- configuration -------------------------------------------------------------------

EXAMPLE = """
max_age: 12h
path: /var/log/journal
json: false
labels:
  job: systemd-journal
matches: _TRANSPORT=journal
units: [ssh.service]
buffer_entries: 500
buffer_bytes: 4MiB
max_entry_bytes: 1MiB
"""


def test_the_example_config_round_trips() -> None:
    import yaml

    config = JournalConfig.model_validate(yaml.safe_load(EXAMPLE))
    assert config.max_age == 12 * 3600 and config.buffer_bytes == 4 << 20
    again = JournalConfig.model_validate(config.model_dump(by_alias=True))
    assert again == config


@pytest.mark.parametrize(
    "bad",
    [
        {"unknown": 1},
        {"path": "/a", "files": ["/b"]},
        {"matches": "lowercase=x"},
        {"buffer_entries": 0},
        {"max_age": "soon"},
    ],
)
def test_bad_configs_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JournalConfig.model_validate(bad)


def test_every_field_is_described() -> None:
    assert all(f.description for f in JournalConfig.model_fields.values())


# --- the reader with a stand-in journalctl -------------------------------------------


def fake_journalctl(tmp_path: Path, script: str) -> str:
    """An executable that records its arguments (one JSON line per run) and runs
    ``script`` (Python, ``run`` is the run number from 1)."""
    path = tmp_path / "journalctl"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, time\n"
        f"log = {str(tmp_path / 'runs')!r}\n"
        "with open(log, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "run = sum(1 for _ in open(log))\n"
        "out = sys.stdout\n" + script
    )
    path.chmod(0o755)
    return str(path)


def line(i: int) -> str:
    cursor = CURSOR.replace("i=1;", f"i={i};")
    return json.dumps(
        {"__CURSOR": cursor, "__REALTIME_TIMESTAMP": str(1000 + i), "MESSAGE": f"m{i}"}
    )


@pytest.fixture
def sources() -> Iterator[list[JournalSource]]:
    started: list[JournalSource] = []
    yield started
    for source in started:
        source.close()


def read_all(source: JournalSource, count: int, timeout: float = 10) -> list[JournalEntry]:
    got: list[JournalEntry] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += source.read(10)
        time.sleep(0.01)
    return got


def test_malformed_lines_are_counted_and_journalctl_restarted_after_the_last_entry(
    tmp_path: Path, sources: list[JournalSource]
) -> None:
    lines = [
        line(1),
        "garbage",
        line(2),
        '{"MESSAGE": "no cursor"}',
        json.dumps(
            {"__CURSOR": CURSOR.replace("i=1;", "i=3;"), "__REALTIME_TIMESTAMP": "1003"}
        ),  # no MESSAGE: skipped
        "",
        line(4),
    ]
    script = (
        "if run == 1:\n"
        f"    out.write({chr(10).join(lines) + chr(10)!r})\n"
        "    sys.exit(1)\n"
        f"out.write({line(5) + chr(10)!r}); out.flush(); time.sleep(60)\n"
    )
    config = JournalConfig(journalctl=fake_journalctl(tmp_path, script), max_age=0)
    source = JournalSource(config, name="unit")
    sources.append(source.start())
    got = read_all(source, 4)
    assert [e.line for e in got] == ["m1", "m2", "m4", "m5"]
    assert source.errors == {"malformed_entry": 2, "skipped": 1, "journalctl_exit": 1}
    runs = [json.loads(r) for r in (tmp_path / "runs").read_text().splitlines()]
    assert len(runs) == 2
    assert not any(a.startswith("--after-cursor") for a in runs[0])
    assert runs[1][-1] == "--after-cursor=" + CURSOR.replace("i=1;", "i=4;")


def test_a_refused_cursor_falls_back_to_max_age(
    tmp_path: Path, sources: list[JournalSource]
) -> None:
    script = (
        "if any(a.startswith('--after-cursor') for a in sys.argv):\n"
        "    sys.stderr.write('Failed to seek to cursor: Invalid argument\\n')\n"
        "    sys.exit(1)\n"
        f"out.write({line(1) + chr(10)!r}); out.flush(); time.sleep(60)\n"
    )
    config = JournalConfig(journalctl=fake_journalctl(tmp_path, script), max_age="1h")
    recent = CURSOR.replace("t=6611f7b04ff28", f"t={int(time.time() * 1e6):x}")
    source = JournalSource(config, recent)
    sources.append(source.start())
    assert [e.line for e in read_all(source, 1)] == ["m1"]
    runs = [json.loads(r) for r in (tmp_path / "runs").read_text().splitlines()]
    assert runs[1][-1].startswith("--since=@")


def test_an_oversized_entry_keeps_its_message_cut_or_is_skipped(
    tmp_path: Path, sources: list[JournalSource]
) -> None:
    big = json.dumps(
        {
            "__CURSOR": CURSOR.replace("i=1;", "i=7;"),
            "__REALTIME_TIMESTAMP": "1",
            "MESSAGE": "x" * 5000,
            "_SYSTEMD_UNIT": "big.service",
        },
        separators=(",", ":"),
    )
    other = json.dumps(
        {
            "__CURSOR": CURSOR.replace("i=1;", "i=8;"),
            "__REALTIME_TIMESTAMP": "1",
            "MESSAGE": "m",
            "_CMDLINE": "y" * 5000,
        },
        separators=(",", ":"),
    )
    lines = [line(1), big, other, line(2)]
    script = f"out.write({chr(10).join(lines) + chr(10)!r})\nout.flush(); time.sleep(60)\n"
    config = JournalConfig(
        journalctl=fake_journalctl(tmp_path, script), max_entry_bytes=1000, max_age=0
    )
    source = JournalSource(config)
    sources.append(source.start())
    got = read_all(source, 3)
    assert [e.line[:3] for e in got] == ["m1", "xxx", "m2"]
    cut = got[1]
    assert cut.line.endswith(TRUNCATION_MARKER) and cut.truncated
    assert len(cut.line.encode()) < 1000
    assert cut.labels["__journal__systemd_unit"] == "big.service"  # a field after MESSAGE
    assert cut.cursor == CURSOR.replace("i=1;", "i=7;")
    assert source.errors == {"oversized_entry": 2}  # one cut, one skipped


def test_the_buffer_is_bounded_by_entries_and_bytes(
    tmp_path: Path, sources: list[JournalSource]
) -> None:
    script = (
        f"for i in range(1, 201):\n"
        f"    out.write({line(0)!r}.replace('m0', 'm%d' % i) + '\\n')\n"
        "out.flush(); time.sleep(60)\n"
    )
    config = JournalConfig(
        journalctl=fake_journalctl(tmp_path, script), buffer_entries=20, max_age=0
    )
    source = JournalSource(config)
    sources.append(source.start())
    deadline = time.monotonic() + 10
    while source.buffered() < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert source.buffered() == 20
    got = read_all(source, 200)
    assert [e.line for e in got] == [f"m{i}" for i in range(1, 201)]
    assert source.last_cursor == got[-1].cursor

    by_bytes = JournalSource(
        JournalConfig(journalctl=config.journalctl, buffer_bytes=10, max_age=0)
    )
    sources.append(by_bytes.start())
    while by_bytes.buffered() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert by_bytes.buffered() == 5  # "m1".."m5": 2 characters each, 10 at most


def test_close_ends_journalctl_and_the_thread(tmp_path: Path) -> None:
    script = "time.sleep(60)\n"
    source = JournalSource(JournalConfig(journalctl=fake_journalctl(tmp_path, script)))
    source.start()
    deadline = time.monotonic() + 10
    while source.pid is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert source.pid is not None
    source.close()
    assert source.pid is None
    assert source.read() == [] and source.errors == {}


def test_a_missing_journalctl_is_counted_and_retried(tmp_path: Path) -> None:
    source = JournalSource(JournalConfig(journalctl=str(tmp_path / "no-such-journalctl")))
    source.start()
    try:
        deadline = time.monotonic() + 10
        while not source.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert source.errors == {"journalctl_start": 1}
        assert source.read() == [] and source.pid is None
    finally:
        source.close()


def test_a_restart_within_a_run_never_skips_to_max_age() -> None:
    now = (cursor_time(CURSOR) or 0.0) + 7200
    config = JournalConfig(max_age="1h")
    assert journalctl_command(config, CURSOR, now=now, resuming=True)[-1] == (
        f"--after-cursor={CURSOR}"
    )
