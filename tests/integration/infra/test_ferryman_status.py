"""``ferryman status`` watching a real worker through which records keep flowing: the
live view in a pseudo-terminal (TERM=xterm, a window of its own size) shows the worker
ready, a non-zero records/s and counters that move from one refresh to the next, and
ends cleanly on Ctrl-C's signal; ``--once`` into a pipe is a plain table."""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from tests.integration.pipeline import ROOT, create_topics, remote_write, time_series

SINK = "prometheus_remote_write"
#: A control sequence: parameters and the final letter.
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
ROWS, COLUMNS = 40, 150


class Screen:
    """What a terminal shows after the bytes fed so far: the few controls a redrawn
    table uses (carriage return, newline, cursor up, erase line), colours ignored."""

    def __init__(self) -> None:
        self.lines = [""]
        self.row = self.col = 0
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.raw = b""

    def feed(self, data: bytes) -> None:
        self.raw += data
        text = self._decode.decode(data)
        i = 0
        while i < len(text):
            if match := _CSI.match(text, i):
                params, final = match.groups()
                if final == "A":
                    self.row = max(0, self.row - int(params or 1))
                elif final == "K" and params == "2":
                    self.lines[self.row] = ""
                i = match.end()
                continue
            char = text[i]
            i += 1
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row += 1
                self.lines.extend([""] * (self.row + 1 - len(self.lines)))
            else:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + char + line[self.col + 1 :]
                self.col += 1

    def text(self) -> str:
        return "\n".join(self.lines)

    def row_of(self, name: str) -> list[str] | None:
        """The cells of the table row for ``name`` on screen now."""
        for line in self.lines:
            if line.startswith("│") and f" {name} " in line:
                return [cell.strip() for cell in line.strip().strip("│").split("│")]
        return None


@contextlib.contextmanager
def _flowing(bootstrap: str, topic: str, unique: str) -> Iterator[None]:
    """Keep producing remote-write messages (ten series each) until the block ends."""
    stop = threading.Event()

    def produce() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        try:
            n = 0
            while not stop.is_set():
                now_ms = int(time.time() * 1000)
                series = [
                    time_series({"__name__": f"st_{unique}", "sid": f"{n}-{s}"}, (1.0, now_ms))
                    for s in range(10)
                ]
                message = remote_write(series, cluster="status")
                producer.send(topic, value=message.value, headers=list(message.headers))
                producer.flush(timeout=30)
                n += 1
                stop.wait(0.1)
        finally:
            producer.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def _status_argv(*flags: str) -> list[str]:
    return [sys.executable, "-m", "ferryman", "status", *flags]


def _moved(rows: list[list[str]]) -> bool:
    """Ready, some non-zero IN/s, and a SHIPPED total that differs between two of the
    screens the row went through."""
    ready = [r for r in rows if len(r) == 11 and r[2] == "yes"]
    rates = [r[3] for r in ready if r[3] not in ("-", "0")]
    shipped = {r[9] for r in ready if r[9] != "-"}
    return bool(rates) and len(shipped) >= 2


@pytest.mark.integration
def test_live_view_in_a_terminal_shows_a_worker_moving(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    name = f"w-{unique}"
    with _flowing(bootstrap, unique, unique):
        running = worker(SINK, unique, {"url": stack("victoriametrics", "remote_write")})
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env.update(TERM="xterm", PYTHONPATH=str(ROOT))
        view = subprocess.Popen(
            _status_argv("--target", f"{name}={running.api}", "--interval", "1"),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        screen = Screen()
        rows: list[list[str]] = []  # the worker's row on each screen it changed on
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not _moved(rows):
                if select.select([master], [], [], 0.5)[0]:
                    screen.feed(os.read(master, 65536))
                    now = screen.row_of(name)
                    if now is not None and (not rows or rows[-1] != now):
                        rows.append(now)
                assert view.poll() is None, screen.text()
            assert _moved(rows), f"{rows}\n{screen.text()}"
            view.send_signal(signal.SIGINT)  # what Ctrl-C sends
            assert view.wait(30) == 0
            with contextlib.suppress(OSError):  # EIO once the view has exited
                while select.select([master], [], [], 0.5)[0]:
                    chunk = os.read(master, 65536)
                    if not chunk:
                        break
                    screen.feed(chunk)
        finally:
            if view.poll() is None:
                view.kill()
                view.wait(10)
            os.close(master)
    # Redrawn in place: the screen holds one table (a title, a header), not a scroll of
    # them, in colour, sized to the window; the cursor is shown again at the end.
    shown = screen.text()
    assert shown.count("ferryman status") == 1 and shown.count("NAME") == 1, shown
    assert b"\x1b[1A" in screen.raw and b"\x1b[32m" in screen.raw
    assert max(len(line) for line in screen.lines) <= COLUMNS
    assert screen.raw.rstrip().endswith(b"\x1b[?25h")
    kinds = {r[1] for r in rows}
    assert kinds == {"worker"}


@pytest.mark.integration
def test_once_into_a_pipe_is_a_plain_table_of_two_reads(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    name = f"w-{unique}"
    with _flowing(bootstrap, unique, unique):
        running = worker(SINK, unique, {"url": stack("victoriametrics", "remote_write")})
        env = {**os.environ, "TERM": "xterm", "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            _status_argv(
                "--once", "--target", f"{name}={running.api}", "--target", "gone=http://127.0.0.1:1"
            ),
            capture_output=True,
            cwd=ROOT,
            env=env,
            timeout=60,
            check=True,
        )
    out = done.stdout.decode()
    assert "\x1b" not in out
    header, *lines = out.splitlines()
    assert header.split()[:5] == ["NAME", "KIND", "READY", "IN/s", "OUT/s"]
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows[name][1:3] == ["worker", "yes"]
    # Two reads a second apart: the rates are figures, where one read leaves them blank.
    assert re.fullmatch(r"[0-9.]+[kM]?", rows[name][3]), out
    assert re.fullmatch(r"[0-9.]+[kM]?", rows[name][4]), out
    assert rows["gone"][1:] == ["other", "down", *["-"] * 8]
