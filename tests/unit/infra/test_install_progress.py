"""What ``ferryman up`` installs, and the lines it says while installing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from infra.local import supervisor
from infra.local.catalogue import SERVICES
from infra.local.errors import InstallError
from infra.local.paths import Layout
from infra.local.pipeline import PIPELINE
from infra.local.service import Service


def test_ferryman_up_leaves_the_test_tools_out_and_stack_up_keeps_them() -> None:
    up = {s.name for s in supervisor.to_install(None, pipeline=True)}
    stack = {s.name for s in supervisor.to_install(None, pipeline=False)}
    assert stack >= supervisor.TEST_TOOLS
    assert not supervisor.TEST_TOOLS & up
    assert {s.name for s in PIPELINE} <= up
    # everything the pipeline runs is still there: HotROD's binary for hotrod-demo
    assert {s.name for s in SERVICES} - supervisor.TEST_TOOLS <= up
    named = supervisor.to_install(["kube-tools"], pipeline=True)
    assert [s.name for s in named] == ["kube-tools"]


def _service(name: str, install) -> Service:
    return Service(name=name, endpoints={}, install=install, command=lambda layout: [], probe=bool)


def test_installs_say_what_took_time_and_which_are_still_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "_HEARTBEAT", 0.05)
    release = threading.Event()
    lines: list[str] = []

    def slow(layout: Layout) -> str:
        # returns once the heartbeat has named it as still installing
        assert release.wait(30)
        return "2.0"

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("  still installing"):
            release.set()

    services = [
        _service("redis", lambda layout: "7.0"),
        _service("kafka", slow),
        _service("jaeger", lambda layout: "1.0"),
    ]
    versions = supervisor._install_all(Layout(tmp_path), services, say)
    assert versions == {"redis": "7.0", "kafka": "2.0", "jaeger": "1.0"}
    assert any(line.startswith("  still installing") and "kafka" in line for line in lines)
    assert not any("redis" in line for line in lines[:-1])  # cached: no line of its own
    assert lines[-1].startswith("installed 3 services in ")


def test_a_failed_install_is_named_and_raised(tmp_path: Path) -> None:
    def broken(layout: Layout) -> str:
        raise InstallError("kafka", "download", "refused")

    lines: list[str] = []
    with pytest.raises(InstallError):
        supervisor._install_all(Layout(tmp_path), [_service("kafka", broken)], lines.append)
    assert lines == ["  kafka: install failed"]
