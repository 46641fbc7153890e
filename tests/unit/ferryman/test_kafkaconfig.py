"""The Kafka security settings: no inline password, the secret read from a file or a
variable at start and never shown, every Kafka section of every config taking them."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.logs.config import KafkaOut as LogsKafkaOut
from edge.logs.config import load_config as load_logs_config
from edge.metrics.config import KafkaOut as MetricsKafkaOut
from edge.metrics.config import load_config as load_metrics_config
from ferryman.errors import ConfigError, format_errors
from ferryman.kafkaconfig import (
    PLAINTEXT_CREDENTIALS,
    RECONNECT_BACKOFF_MAX_MS,
    KafkaSecurity,
    with_security_env,
)
from workers.settings import KafkaSettings, load_settings

SECRET = "s3cr3t-Pa55word"


def _sasl(**password: str) -> dict[str, object]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl": {"username": "ferryman", **password},
    }


def _errors(data: dict[str, object]) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        KafkaSecurity.model_validate(data)
    return format_errors(refused.value)


def test_an_inline_password_is_refused_with_where_to_put_it() -> None:
    errors = _errors(_sasl(password=SECRET))
    assert errors == [
        "sasl: Value error, a password is not accepted in the configuration: "
        "use password_file or password_env"
    ]
    assert SECRET not in "".join(errors)


def test_exactly_one_password_source() -> None:
    assert _errors(_sasl()) == [
        "sasl: Value error, set exactly one of password_file and password_env"
    ]
    assert _errors(_sasl(password_file="/a", password_env="B"))[0].endswith(
        "set exactly one of password_file and password_env"
    )


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"security_protocol": "SASL_SSL"}, "security_protocol SASL_SSL needs a sasl section"),
        (
            {"security_protocol": "SSL", "sasl": {"username": "u", "password_env": "P"}},
            "a sasl section needs security_protocol SASL_SSL or SASL_PLAINTEXT, not SSL",
        ),
        (
            {"ssl": {"ca_file": "/ca.pem"}},
            "an ssl section needs security_protocol SSL or SASL_SSL, not PLAINTEXT",
        ),
        ({"security_protocol": "TLS"}, "security_protocol: Input should be"),
    ],
)
def test_incoherent_settings_are_refused(data: dict[str, object], says: str) -> None:
    assert says in _errors(data)[0]


def test_the_password_is_read_from_a_file_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")
    security = KafkaSecurity.model_validate(_sasl(password_file=str(secret)))
    credentials = security.credentials()
    assert credentials.kwargs() == {
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ferryman",
        "sasl_plain_password": SECRET,
    }
    for shown in (repr(security), str(security), repr(credentials), str(credentials)):
        assert SECRET not in shown
    assert "**********" in repr(credentials)


def test_the_password_is_read_from_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", SECRET)
    credentials = KafkaSecurity.model_validate(_sasl(password_env="KAFKA_PASSWORD")).credentials()
    assert credentials.kwargs()["sasl_plain_password"] == SECRET
    assert SECRET not in repr(credentials)


def test_a_missing_password_is_a_config_error_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    unset = KafkaSecurity.model_validate(_sasl(password_env="NOT_SET_ANYWHERE"))
    with pytest.raises(ConfigError) as failed:
        unset.credentials("ferryman.kafka")
    assert failed.value.errors == [
        "ferryman.kafka.sasl.password_env: the variable NOT_SET_ANYWHERE is not set"
    ]
    missing = KafkaSecurity.model_validate(_sasl(password_file=str(tmp_path / "nope")))
    with pytest.raises(ConfigError) as failed:
        missing.credentials()
    assert failed.value.errors == [
        f"kafka.sasl.password_file: cannot read {tmp_path / 'nope'}: No such file or directory"
    ]
    (tmp_path / "empty").write_text("\n")
    empty = KafkaSecurity.model_validate(_sasl(password_file=str(tmp_path / "empty")))
    with pytest.raises(ConfigError, match="is empty"):
        empty.credentials()


def test_tls_makes_a_verifying_context(tmp_path: Path) -> None:
    credentials = KafkaSecurity.model_validate({"security_protocol": "SSL"}).credentials()
    kwargs = credentials.kwargs()
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    unchecked = KafkaSecurity.model_validate(
        {"security_protocol": "SSL", "ssl": {"check_hostname": False}}
    ).credentials()
    assert unchecked.kwargs()["ssl_check_hostname"] is False
    (tmp_path / "ca.pem").write_text("not a certificate")
    bad_ca = KafkaSecurity.model_validate(
        {"security_protocol": "SSL", "ssl": {"ca_file": str(tmp_path / "ca.pem")}}
    )
    with pytest.raises(ConfigError, match=r"kafka\.ssl\.ca_file: cannot load"):
        bad_ca.credentials()


def test_plaintext_adds_only_the_reconnect_backoff() -> None:
    only = {"reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS}
    assert KafkaSecurity().credentials().kwargs() == only
    assert PLAINTEXT_CREDENTIALS.kwargs() == only


@pytest.mark.parametrize("section", [LogsKafkaOut, MetricsKafkaOut])
def test_every_edge_kafka_section_takes_the_settings(section: type[KafkaSecurity]) -> None:
    out = section.model_validate(_sasl(password_env="P"))
    assert out.sasl is not None and out.sasl.username == "ferryman"
    with pytest.raises(ValidationError):
        section.model_validate(_sasl(password=SECRET))


def test_worker_settings_take_them_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert issubclass(KafkaSettings, KafkaSecurity)
    config = tmp_path / "worker.yaml"
    config.write_text("kafka:\n  input_topic: t\n  security_protocol: SASL_SSL\n")
    monkeypatch.setenv("FERRYMAN_KAFKA__SASL__USERNAME", "ferryman")
    monkeypatch.setenv("FERRYMAN_KAFKA__SASL__PASSWORD_FILE", "/run/secrets/kafka")
    settings = load_settings(config, function="loki")
    assert settings.kafka.sasl is not None
    assert settings.kafka.sasl.password_file == Path("/run/secrets/kafka")
    monkeypatch.setenv("FERRYMAN_KAFKA__SASL__PASSWORD", SECRET)
    with pytest.raises(ConfigError) as refused:
        load_settings(config, function="loki")
    assert "use password_file or password_env" in str(refused.value)
    assert SECRET not in str(refused.value)


def test_the_start_check_leaves_an_unreachable_broker_to_the_clients() -> None:
    from ferryman.kafkacheck import check_kafka

    credentials = KafkaSecurity.model_validate({"security_protocol": "SSL"}).credentials()
    check_kafka("127.0.0.1:1", credentials, timeout_s=1)  # nothing listens: no error


def _shipper_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(
        "scrape_configs: []\n"
        "ferryman:\n  kafka:\n    bootstrap_servers: kafka:9093\n    security_protocol: SSL\n"
    )
    return path


@pytest.mark.parametrize("kind", ["metrics", "logs"])
def test_the_shippers_take_them_from_the_environment_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    load = load_metrics_config if kind == "metrics" else load_logs_config
    path = _shipper_file(tmp_path, kind)
    assert load(path).ferryman.kafka.sasl is None
    monkeypatch.setenv("FERRYMAN_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FERRYMAN_KAFKA__SASL__USERNAME", "edge")
    monkeypatch.setenv("FERRYMAN_KAFKA__SASL__PASSWORD_FILE", "/etc/ferryman/kafka/password")
    monkeypatch.setenv("FERRYMAN_KAFKA__SSL__CA_FILE", "/etc/ferryman/kafka/ca.crt")
    # Not a security field: the shippers' bootstrap servers come from the file only.
    monkeypatch.setenv("FERRYMAN_KAFKA__BOOTSTRAP_SERVERS", "elsewhere:9092")
    kafka = load(path).ferryman.kafka
    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl is not None and kafka.sasl.username == "edge"
    assert kafka.sasl.password_file == Path("/etc/ferryman/kafka/password")
    assert kafka.ssl is not None and kafka.ssl.ca_file == Path("/etc/ferryman/kafka/ca.crt")
    assert kafka.bootstrap_servers == "kafka:9093"
    monkeypatch.setenv("FERRYMAN_KAFKA__SASL__PASSWORD", SECRET)
    with pytest.raises(ConfigError) as refused:
        load(path)
    assert "use password_file or password_env" in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_missing_kafka_section_stays_missing_without_the_environment() -> None:
    assert with_security_env(None, {}) is None
    assert with_security_env(None, {"FERRYMAN_KAFKA__SECURITY_PROTOCOL": "SSL"}) == {
        "security_protocol": "SSL"
    }
    assert with_security_env("not a mapping", {"FERRYMAN_KAFKA__SASL__USERNAME": "x"}) == (
        "not a mapping"
    )
