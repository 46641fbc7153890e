"""The receiver's configuration: defaults, every error by dotted path, the token."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.traces.config import MESSAGE_HEADROOM, load_config, token_matches
from ferryman import cli
from ferryman.errors import ConfigError

EXAMPLE = """\
external_labels: {cluster: prod-eu-1, region: eu}
ferryman:
  kafka: {bootstrap_servers: "kafka:9092", tenant: team-a}
  grpc: {listen: "0.0.0.0:4317"}
  http: {listen: "0.0.0.0:4318"}
  limits: {max_request_bytes: 8MiB, max_in_flight_requests: 16, ack_timeout: 5s}
  auth: {bearer_token_file: TOKEN}
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "token").write_text("s3cret\n")
    path = tmp_path / "traces.yaml"
    path.write_text(textwrap.dedent(text).replace("TOKEN", str(tmp_path / "token")))
    return path


def test_defaults_of_an_empty_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ""))
    settings = config.ferryman
    assert settings.kafka.topic == "ferryman.traces"
    assert settings.kafka.max_message_bytes == 2**20 - MESSAGE_HEADROOM
    assert (settings.grpc.listen, settings.http.listen) == ("127.0.0.1:4317", "127.0.0.1:4318")
    assert settings.limits.max_request_bytes == 4 * 2**20
    assert settings.auth is None and settings.tls is None
    assert config.resource_attributes() == {}


def test_the_example_loads_and_names_the_cluster_attribute(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, EXAMPLE))
    assert config.resource_attributes() == {"k8s.cluster.name": "prod-eu-1", "region": "eu"}
    assert config.ferryman.limits.max_request_bytes == 8 * 2**20
    assert config.ferryman.limits.ack_timeout == 5.0
    assert config.ferryman.auth is not None
    assert config.ferryman.auth.token() == b"s3cret"


def test_every_error_by_dotted_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        ferryman:
          kafka: {topics: x}
          limits: {max_in_flight_requests: 0, ack_timeout: soon}
          auth: {}
        """,
    )
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    errors = failed.value.errors
    assert any(e.startswith("ferryman.kafka.topics: Extra inputs") for e in errors)
    assert any(e.startswith("ferryman.limits.max_in_flight_requests:") for e in errors)
    assert any(e.startswith("ferryman.limits.ack_timeout:") for e in errors)
    assert any("exactly one of bearer_token and bearer_token_file" in e for e in errors)


def test_a_missing_token_file_fails_the_start_without_showing_a_token(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(f"ferryman: {{auth: {{bearer_token_file: {tmp_path / 'absent'}}}}}\n")
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    assert failed.value.errors == [
        "ferryman.auth.bearer_token_file: cannot read it: No such file or directory"
    ]


def test_kafka_security_comes_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRYMAN_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("FERRYMAN_KAFKA__SASL__USERNAME", "edge")
    monkeypatch.setenv("FERRYMAN_KAFKA__SASL__PASSWORD_ENV", "KAFKA_PASSWORD")
    config = load_config(_write(tmp_path, ""))
    assert config.ferryman.kafka.security_protocol == "SASL_PLAINTEXT"
    assert config.ferryman.kafka.sasl is not None
    assert config.ferryman.kafka.sasl.username == "edge"


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer s3cret", True),
        ("bearer   s3cret ", True),
        ("Bearer s3cre", False),
        ("Basic s3cret", False),
        ("s3cret", False),
        (None, False),
    ],
)
def test_token_matches(header: str | None, ok: bool) -> None:
    assert token_matches(b"s3cret", header) is ok


def test_ferryman_check_tells_a_traces_file_by_its_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write(tmp_path, EXAMPLE)
    bad = tmp_path / "bad.yaml"
    bad.write_text("external_labels: {cluster: x}\nferryman: {grpc: {listen: 1}, limits: {x: 1}}\n")
    code = cli.main(["check", str(good), str(bad)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == f"{good}: OK (traces)\n"
    assert err.splitlines() == [
        f"{bad}: 2 errors (traces)",
        "  ferryman.grpc.listen: Input should be a valid string",
        "  ferryman.limits.x: Extra inputs are not permitted",
    ]
