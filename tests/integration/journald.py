"""A real journal file written entry by entry, for tests of the journald source.

No journald runs here (nor needs to): ``systemd-journal-remote --output=F.journal -``
(Debian package systemd-journal-remote) turns the journal export format on its
stdin into a real journal file, which journalctl (Debian package systemd) follows
as it would /var/log/journal.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

BOOT_ID = uuid.uuid4().hex


def journal_remote() -> str:
    for candidate in (
        shutil.which("systemd-journal-remote"),
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "systemd-journal-remote is missing: apt-get install systemd-journal-remote", pytrace=False
    )


class JournalWriter:
    """Appends entries to a real journal file through systemd-journal-remote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._monotonic = 0
        self._process = subprocess.Popen(
            [journal_remote(), f"--output={path}", "--split-mode=none", "-"],
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def append(
        self,
        message: str | bytes,
        *,
        unit: str = "app.service",
        priority: int = 6,
        realtime_us: int | None = None,
        **fields: str,
    ) -> int:
        """One entry; returns its realtime in µs."""
        self._monotonic += 1
        realtime = time.time_ns() // 1000 if realtime_us is None else realtime_us
        record = {
            "__REALTIME_TIMESTAMP": str(realtime),
            "__MONOTONIC_TIMESTAMP": str(self._monotonic),
            "_BOOT_ID": BOOT_ID,
            "_HOSTNAME": "edge-7",
            "_SYSTEMD_UNIT": unit,
            "PRIORITY": str(priority),
            "SYSLOG_IDENTIFIER": unit.split(".")[0],
            **fields,
        }
        out = b"".join(f"{k}={v}\n".encode() for k, v in record.items())
        raw = message if isinstance(message, bytes) else message.encode()
        # The export format's binary form: name, newline, little-endian length, data.
        out += b"MESSAGE\n" + struct.pack("<Q", len(raw)) + raw + b"\n\n"
        assert self._process.stdin is not None
        self._process.stdin.write(out)
        self._process.stdin.flush()
        return realtime

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


def cursors(path: Path) -> list[str]:
    """The cursor of every entry of a journal file, in order, as journalctl gives them."""
    out = subprocess.run(
        [
            "journalctl",
            f"--file={path}",
            "--output=json",
            "--merge",
            "--no-pager",
            "--output-fields=MESSAGE",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return [json.loads(line)["__CURSOR"] for line in out.splitlines() if line.strip()]
