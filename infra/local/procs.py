"""Process groups on Linux: spawn detached, measure, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "Captured",
    "alive",
    "group_members",
    "group_rss_bytes",
    "live_processes",
    "run_captured",
    "spawn",
    "start_ticks",
    "stop_group",
]


class Captured:
    """A finished command: its exit status and its output (stdout and stderr, merged)."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_captured(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Captured:
    """Run ``argv`` to its end with no input, its output captured for the caller's
    error message (an install or build step that fails says why in its last lines)."""
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return Captured(argv, proc.returncode, proc.stdout)


def spawn(argv: Sequence[str], *, log: Path, cwd: Path, env: Mapping[str, str]) -> int:
    """Start ``argv`` as the leader of a new session, detached from us; returns its pid.

    A shell starts it in the background and exits at once, so the service is not our
    child: it outlives us, nobody has to reap it, and it stops as a process group.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
    launcher = 'setsid "$@" </dev/null >>"$FERRYMAN_LOG" 2>&1 & echo $!'
    proc = subprocess.run(
        ["/bin/sh", "-c", launcher, "sh", *argv],
        cwd=cwd,
        env={**os.environ, **env, "FERRYMAN_LOG": str(log)},
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return int(proc.stdout.strip())


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None if it is gone or a zombie.

    Stored with the pid so that a pid reused by another program after a reboot or a
    crash is not mistaken for our service.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def alive(pid: int, ticks: int | None = None) -> bool:
    """True while ``pid`` exists, is not a zombie and (if given) started at ``ticks``."""
    started = start_ticks(pid)
    return started is not None and (ticks is None or started == ticks)


def live_processes() -> Iterator[tuple[int, list[str]]]:
    """Each process that is not a zombie: its pid and the fields of its
    ``/proc/PID/stat`` after the command name (state first, then ppid, pgrp, ...)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z":
            yield int(entry.name), fields


def group_members(pgid: int) -> list[int]:
    return [pid for pid, fields in live_processes() if int(fields[2]) == pgid]


def group_rss_bytes(pgid: int) -> int:
    total = 0
    for pid in group_members(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def stop_group(pgid: int, timeout: float) -> bool:
    """SIGTERM the group, wait up to ``timeout``, then SIGKILL. True if it went quietly."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return True
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(50):
        if not group_members(pgid):
            break
        time.sleep(0.1)
    return False
