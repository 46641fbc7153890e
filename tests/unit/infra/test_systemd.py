"""The systemd units for legacy hosts pass ``systemd-analyze verify`` without a word of
warning, and every command they run is one ferryman accepts.

Never skipped: where systemd-analyze is missing, the project's apt installer puts it
there (the ``systemd`` package), and where that fails, the test fails.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ferryman import cli
from infra.local.install import apt_install

UNITS = Path(__file__).parents[3] / "infra" / "systemd"
SHIPPED = "/opt/ferryman/bin/ferryman"


def _systemd_analyze() -> str:
    if shutil.which("systemd-analyze") is None:
        apt_install("systemd-analyze", ["systemd"])
    found = shutil.which("systemd-analyze")
    assert found is not None, "systemd-analyze is still missing after installing systemd"
    return found


def _units() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def test_the_units_are_there() -> None:
    assert [u.name for u in _units()] == [
        "ferryman-edge-logs.service",
        "ferryman-edge-metrics.service",
        "ferryman-edge-traces.service",
        "ferryman-gateway.service",
        "ferryman-worker@.service",
    ]


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    # verify insists that ExecStart= binaries exist: the copies point where this test's
    # ferryman is installed, and differ from the shipped units in that path alone.
    ferryman = Path(sys.executable).with_name("ferryman")
    assert ferryman.is_file(), f"{ferryman} missing: ferryman is not installed in this venv"
    copies = []
    for unit in _units():
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(SHIPPED, str(ferryman)))
        copies.append(str(copy))
    proc = subprocess.run(
        [analyze, "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # verify exits 0 on unknown keys and unparsable values: any output is a finding.
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def _service(unit: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    return parser["Service"]


@pytest.mark.parametrize("unit", _units(), ids=lambda u: u.name)
def test_the_commands_are_ferrymans_own(unit: Path) -> None:
    service = _service(unit)
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(service[key].replace("%i", "loki"))
        assert argv[0] == SHIPPED
        cli.build_parser().parse_args(argv[1:])  # exits 2 on a flag ferryman does not take
    pre = shlex.split(service["ExecStartPre"].replace("%i", "loki"))
    start = shlex.split(service["ExecStart"].replace("%i", "loki"))
    assert pre[1] == "check" and pre[-1] == start[-1], "the check reads the file it starts with"


@pytest.mark.parametrize("unit", _units(), ids=lambda u: u.name)
def test_the_units_are_hardened_and_drain(unit: Path) -> None:
    service = _service(unit)
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "User": "ferryman",
    }.items():
        assert service[key] == value, key
    assert int(service["TimeoutStopSec"]) >= 45
    if "edge" in unit.name or "gateway" in unit.name:
        assert service["ExecReload"] == "kill -HUP $MAINPID"
    if "edge-traces" in unit.name or "gateway" in unit.name:
        # It keeps nothing: a client is answered only once Kafka took its spans.
        assert "ReadWritePaths" not in service
        assert "StateDirectory" not in service
    elif "edge" in unit.name:
        assert service["ReadWritePaths"] == "/var/lib/ferryman"
    if "edge-logs" in unit.name:
        assert service["SupplementaryGroups"] == "systemd-journal adm"
        assert service["ReadOnlyPaths"] == "/var/log"
