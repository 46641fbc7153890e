"""``ferryman check``: every shipped kind of file validated offline, each error by its
dotted path, the kind told by flag, comment or keys."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman import cli
from ferryman.configcheck import check_file
from functions import registry

LOGS = """\
server: {http_listen_port: 9080}
positions: {filename: /var/lib/ferryman/positions.json}
scrape_configs:
  - job_name: varlog
    static_configs:
      - labels: {job: varlog, __path__: /var/log/*.log}
  - job_name: journal
    journal: {max_age: 12h, labels: {job: journal}}
ferryman:
  kafka: {bootstrap_servers: "kafka:9092", topic: ferryman.logs}
"""

METRICS = """\
global: {scrape_interval: 15s, external_labels: {cluster: legacy}}
rule_files: [rules.yml]
scrape_configs:
  - job_name: node
    static_configs: [{targets: ["127.0.0.1:9100"]}]
ferryman:
  kafka: {bootstrap_servers: "kafka:9092"}
  buffer: {directory: /var/lib/ferryman/edge-metrics}
"""

WORKER = """\
kafka: {bootstrap_servers: "kafka:9092", input_topic: ferryman.logs}
config: {url: "http://loki:3100"}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking connects to nothing: any attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"ferryman check tried the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_good_files_of_every_kind_are_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = _write(tmp_path, "edge-logs.yaml", LOGS)
    metrics = _write(tmp_path, "edge-metrics.yaml", METRICS)
    named = _write(tmp_path, "named.yaml", "function: loki\n" + WORKER)
    hinted = _write(tmp_path, "hinted.yaml", "# ferryman-kind: worker:loki\n" + WORKER)
    code, out, err = _check([str(p) for p in (logs, metrics, named, hinted)], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{logs}: OK (logs)",
        f"{metrics}: OK (metrics)",
        f"{named}: OK (worker:loki)",
        f"{hinted}: OK (worker:loki)",
    ]


def test_two_errors_are_listed_by_dotted_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write(tmp_path, "good.yaml", LOGS)
    bad = _write(
        tmp_path,
        "bad.yaml",
        """\
        positions: {filename: /var/lib/ferryman/positions.json}
        scrape_configs:
          - job_name: varlog
            static_configs:
              - labels: {__path__: /var/log/*.log}
        ferryman:
          kafka: {max_message_bytes: 10}
          rotate_wait: soon
        """,
    )
    code, out, err = _check([str(bad), str(good)], capsys)
    assert code == 1
    assert out == f"{good}: OK (logs)\n"
    assert err.splitlines() == [
        f"{bad}: 2 errors (logs)",
        "  ferryman.kafka.max_message_bytes: Input should be greater than or equal to 65536",
        "  ferryman.rotate_wait: Value error, not a duration: 'soon' (use e.g. 15s, 1m30s, 500ms)",
    ]


def test_a_worker_reports_settings_and_function_config_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(
        tmp_path,
        "loki.yaml",
        """\
        kafka: {input_topic: ferryman.logs, max_poll_records: 0}
        config: {url: 3}
        """,
    )
    code, _, err = _check(["--kind", "worker:loki", str(bad)], capsys)
    assert code == 1
    assert err.splitlines() == [
        f"{bad}: 2 errors (worker:loki)",
        "  kafka.max_poll_records: Input should be greater than or equal to 1",
        "  config.url: Input should be a valid string",
    ]


def test_a_worker_without_a_function_name_says_how_to_give_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "worker.yaml", WORKER)
    code, _, err = _check([str(path)], capsys)
    assert code == 1
    assert "function: not named: give --kind worker:NAME" in err


def test_a_file_of_no_known_kind_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = _write(tmp_path, "empty.yaml", "{}\n")
    code, out, err = _check([str(empty)], capsys)
    assert (code, out) == (1, "")
    assert f"{empty}: 1 error\n" in err
    assert "cannot tell which kind of configuration this is" in err
    assert "--kind KIND or a '# ferryman-kind: KIND' line" in err


def test_an_unknown_kind_in_the_file_is_an_error_of_that_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "odd.yaml", "# ferryman-kind: collector\n" + LOGS)
    code, _, err = _check([str(path)], capsys)
    assert code == 1
    known = "known: logs, metrics, traces, gateway, worker:NAME"
    assert f"<kind>: unknown kind 'collector'; {known}" in err


def test_an_unknown_kind_on_the_command_line_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "edge-logs.yaml", LOGS)
    with pytest.raises(SystemExit) as exited:
        cli.main(["check", "--kind", "collector", str(path)])
    assert exited.value.code == 2
    assert "unknown kind 'collector'" in capsys.readouterr().err


def test_the_kind_given_wins_over_detection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "edge-logs.yaml", LOGS)
    code, _, err = _check(["--kind", "metrics", str(path)], capsys)
    assert code == 1
    assert f"{path}: " in err and "(metrics)" in err
    assert "positions: Extra inputs are not permitted" in err


def test_a_missing_file_and_broken_yaml_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _write(tmp_path, "broken.yaml", "scrape_configs: [\n")
    code, _, err = _check([str(tmp_path / "absent.yaml"), str(broken)], capsys)
    assert code == 1
    assert f"{tmp_path / 'absent.yaml'}: 1 error" in err
    assert f"{broken}: 1 error" in err
    assert err.count("<file>: ") == 2


def test_a_bare_prometheus_file_is_told_by_the_loader_that_accepts_it(tmp_path: Path) -> None:
    # Nothing in it is the metrics shipper's alone; only the metrics loader accepts it.
    path = _write(
        tmp_path,
        "prometheus.yml",
        """\
        scrape_configs:
          - job_name: node
            static_configs: [{targets: ["127.0.0.1:9100"]}]
        """,
    )
    assert check_file(path, cli._config_kinds()).kind == "metrics"


def test_expand_env_reaches_the_logs_loader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRYMAN_TEST_WAIT", "3s")
    path = _write(tmp_path, "edge-logs.yaml", LOGS + "  rotate_wait: ${FERRYMAN_TEST_WAIT}\n")
    assert _check([str(path)], capsys)[0] == 1
    assert _check(["-config.expand-env", str(path)], capsys)[:2] == (0, f"{path}: OK (logs)\n")


@pytest.mark.parametrize("name", registry.names())
def test_every_functions_example_checks_ok(name: str, tmp_path: Path) -> None:
    spec = registry.load(name)
    kafka = {"input_topic": "in"} | ({"output_topic": "out"} if spec.kind == "transform" else {})
    settings = {"function": name, "kafka": kafka, "config": yaml.safe_load(spec.example)}
    path = _write(tmp_path, f"worker-{name}.yaml", yaml.safe_dump(settings))
    result = check_file(path, cli._config_kinds())
    assert (result.kind, result.errors) == (f"worker:{name}", [])
