"""A benchmarked program: its whole process tree's CPU-seconds and peak RSS from /proc,
and the small probes a benchmark waits on (health URL, Prometheus counter)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.procstat import TICKS

ROOT = Path(__file__).resolve().parents[1]


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for p in pids:
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids += [int(c) for c in (task / "children").read_text().split()]
    return pids


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _status(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


class Measured:
    """A started program whose process tree's CPU and RSS are sampled."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        tmp: Path,
        *,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = tmp / f"{slug(name)}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env
            )
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            pids = _tree(self.proc.pid)
            rss = sum(_status(p, "VmRSS:") for p in pids)
            self.peak_rss = max(self.peak_rss, rss, _status(self.proc.pid, "VmHWM:"))

    def cpu(self) -> float:
        return sum(_cpu(p) for p in _tree(self.proc.pid))

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{self.name} exited {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(check: Callable[[], bool], what: str, procs: list[Measured], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for proc in procs:
            proc.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not after {timeout:.0f}s")
        time.sleep(0.1)


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that runs ``tree``'s ferryman (its checkout first on the path, and
    its native module when one is built in place there)."""
    native = tree / "native" / "python"
    paths = [str(tree)]
    if any((native / "ferryman_native").glob("*.so")):
        paths.append(str(native))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def counter(port: int, name: str, **labels: str) -> float:
    """The sum of a Prometheus counter's series matching ``labels`` (0 if absent)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
