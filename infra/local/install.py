"""Installing services into the stack home, idempotently.

Each installer leaves a stamp naming what it installed; a second run that finds
the stamp does nothing, so a warm ``stack up`` costs seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from .errors import InstallError
from .paths import default_layout
from .procs import run_captured

__all__ = [
    "apt_install",
    "apt_version",
    "maven_classpath",
    "run_script",
    "tail",
]

_apt_lock = threading.Lock()


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run(
    service: str, argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    done = run_captured(argv, cwd=cwd, env=env)
    if done.returncode != 0:
        raise InstallError(service, " ".join(argv), tail(done.output))
    return done.output


def apt_version(package: str) -> str | None:
    """The installed version of a Debian package, or None."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}|${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    status, _, version = proc.stdout.partition("|")
    return version if proc.returncode == 0 and status.endswith(" installed") else None


def apt_install(service: str, packages: Sequence[str]) -> None:
    """Install missing Debian packages without letting them start their own daemons."""
    with _apt_lock:
        missing = [p for p in packages if apt_version(p) is None]
        if not missing:
            return
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run(service, [*sudo, "apt-get", "update", "-q"], env=env)
        # policy-rc.d answering 101 keeps the packages' init scripts from starting
        # system-wide copies of the services we run ourselves on loopback.
        policy = Path("/usr/sbin/policy-rc.d")
        added_policy = False
        if not policy.exists() and os.geteuid() == 0:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            added_policy = True
        try:
            _run(
                service,
                [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                env=env,
            )
        finally:
            if added_policy:
                policy.unlink()


def maven_classpath(
    service: str, pom: Path, dest: Path, goal: str = "dependency:copy-dependencies"
) -> Path:
    """Resolve ``pom``'s runtime dependencies into ``dest`` once; returns ``dest``.

    ``goal`` copies jars (a classpath) or, with ``dependency:unpack-dependencies``,
    unpacks a distribution archive. The stamp is the pom's digest, so editing the
    pom resolves again.
    """
    stamp = dest / ".installed"
    stamp_text = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == stamp_text:
        return dest
    if shutil.which("mvn") is None:
        raise InstallError(service, "mvn", "Maven is not on PATH; install the 'maven' package")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _run(
        service,
        [
            "mvn",
            "-q",
            "-B",
            # Maven's downloads stay in the stack home too, not in ~/.m2.
            f"-Dmaven.repo.local={default_layout().home / 'm2'}",
            "-f",
            str(pom),
            goal,
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ],
    )
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    stamp.write_text(stamp_text)
    return dest


def build_env() -> dict[str, str]:
    """The environment of a build: Go's module and build caches under the stack home
    (``$FERRYMAN_HOME/go``) unless the caller set them, so every download and build of a
    fresh clone lands in the one cache folder (and removing it makes a run cold)."""
    go = default_layout().home / "go"
    env = dict(os.environ)
    env.setdefault("GOPATH", str(go))
    env.setdefault("GOMODCACHE", str(Path(env["GOPATH"]) / "pkg" / "mod"))
    env.setdefault("GOCACHE", str(Path(env["GOPATH"]) / "cache"))
    return env


def run_script(service: str, script: Path, *args: str) -> None:
    """Run an idempotent build script (it checks its own stamp) in :func:`build_env`."""
    _run(service, ["bash", str(script), *args], env=build_env())
