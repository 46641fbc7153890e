"""The command line: Promtail's and Prometheus's flag names on the edge shippers, so
their manifests work with the binary swapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from ferryman import cli


@pytest.mark.parametrize(
    ("argv", "expand_env"),
    [
        (["--config", "/etc/promtail/config.yml"], False),
        (["--config.file", "/etc/promtail/config.yml"], False),
        (["-config.file", "/etc/promtail/config.yml"], False),
        (["-config.file=/etc/promtail/config.yml"], False),
        (["--config.file=/etc/promtail/config.yml"], False),
        (["-config.file=/etc/promtail/config.yml", "-config.expand-env"], True),
        (["-config.file=/etc/promtail/config.yml", "-config.expand-env=true"], True),
        (["-config.expand-env", "-config.file", "/etc/promtail/config.yml"], True),
        (["--config.expand-env", "--config", "/etc/promtail/config.yml"], True),
        (["--config.expand-env=1", "--config", "/etc/promtail/config.yml"], True),
        (["-config.expand-env=True", "-config.file=/etc/promtail/config.yml"], True),
        (["-config.expand-env=false", "-config.file=/etc/promtail/config.yml"], False),
        (["-config.expand-env=0", "-config.file=/etc/promtail/config.yml"], False),
    ],
)
def test_edge_logs_takes_promtails_flags(argv: list[str], expand_env: bool) -> None:
    args = cli.build_parser().parse_args(["edge", "logs", *argv])
    assert (args.kind, args.config, args.expand_env) == (
        "logs",
        Path("/etc/promtail/config.yml"),
        expand_env,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "/etc/prometheus/prometheus.yml"],
        ["--config.file=/etc/prometheus/prometheus.yml"],
    ],
)
def test_edge_metrics_takes_prometheus_config_file(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(["edge", "metrics", *argv])
    assert (args.kind, args.config) == ("metrics", Path("/etc/prometheus/prometheus.yml"))


@pytest.mark.parametrize(
    "argv",
    [
        ["edge", "logs"],  # no configuration
        ["edge", "logs", "-config.file=/c.yml", "-config.expand-env=yes"],  # not a Go boolean
        ["edge", "logs", "-config.file=/c.yml", "-client.url=http://loki:3100"],
        ["edge", "metrics", "--config.file=/c.yml", "--config.expand-env"],  # Promtail's only
        ["edge", "metrics", "-config.file=/c.yml"],  # Prometheus spells it with two dashes
        ["edge", "traces"],  # no configuration
        ["edge", "traces", "--config.file=/c.yml"],  # no Prometheus or Promtail alias
    ],
)
def test_what_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_edge_traces_takes_a_config_file() -> None:
    args = cli.build_parser().parse_args(["edge", "traces", "--config", "/etc/ferryman/t.yaml"])
    assert (args.kind, args.config) == ("traces", Path("/etc/ferryman/t.yaml"))


def test_help_names_the_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["edge", "logs", "--help"])
    shown = capsys.readouterr().out
    assert "-config.file FILE" in shown and "-config.expand-env [BOOL]" in shown


class _Shipper:
    made: ClassVar[list[tuple[Path, dict[str, Any]]]] = []

    def __init__(self, config_path: Path, **options: Any) -> None:
        self.made.append((config_path, options))

    def run(self) -> None:
        pass


@pytest.mark.parametrize(("flag", "expand_env"), [([], False), (["-config.expand-env"], True)])
def test_the_expand_env_choice_reaches_the_shipper(
    monkeypatch: pytest.MonkeyPatch, flag: list[str], expand_env: bool
) -> None:
    from edge.logs import shipper

    monkeypatch.setattr(shipper, "LogShipper", _Shipper)
    monkeypatch.setattr(cli, "_logging", lambda *_: None)
    _Shipper.made.clear()
    assert cli.main(["edge", "logs", "-config.file=/c.yml", *flag]) == 0
    [(config_path, options)] = _Shipper.made
    assert config_path == Path("/c.yml")
    assert options.get("expand_env", False) is expand_env
