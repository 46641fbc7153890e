from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.errors import ConfigError
from functions.registry import load
from workers.main import prepare
from workers.settings import load_settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.yaml"
    path.write_text(text)
    return path


def test_yaml_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "kafka:\n  input_topic: a\n  bootstrap_servers: x:1\n")
    monkeypatch.setenv("FERRYMAN_KAFKA__BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("FERRYMAN_BATCH__MAX_RECORDS", "7")
    settings = load_settings(path, function="prometheus_remote_write")
    assert settings.kafka.bootstrap_servers == "broker:9092"
    assert settings.kafka.input_topic == "a"
    assert settings.batch.max_records == 7
    assert settings.group_id == "ferryman-prometheus_remote_write"


def test_every_error_is_listed_with_its_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "kafka:\n  bogus: 1\nbatch:\n  max_records: 0\nconfig:\n  url: ftp://x\n  extra: 2\n",
    )
    with pytest.raises(ConfigError) as info:
        prepare(load, "prometheus_remote_write", path)
    assert info.value.errors == [
        "kafka.input_topic: Field required",
        "kafka.bogus: Extra inputs are not permitted",
        "batch.max_records: Input should be greater than or equal to 1",
        "config.url: Value error, url must start with http:// or https://",
        "config.extra: Extra inputs are not permitted",
    ]


def test_missing_file_and_unknown_function(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.yaml", function="x")
    with pytest.raises(ConfigError, match="unknown function 'nope'"):
        prepare(load, "nope", None)


@pytest.mark.parametrize("name", ["count", "filter", "parse", "redact", "relabel"])
def test_a_transform_without_an_output_topic_does_not_start(tmp_path: Path, name: str) -> None:
    example = "".join(f"  {line}\n" for line in load(name).example.splitlines())
    path = _write(tmp_path, f"kafka:\n  input_topic: a\nconfig:\n{example}")
    with pytest.raises(ConfigError) as info:
        prepare(load, name, path)
    assert info.value.errors == [f"kafka.output_topic: required by the transform {name}"]
    settings, spec, _ = prepare(load, name, path, kafka={"input_topic": "a", "output_topic": "b"})
    assert (spec.kind, settings.kafka.output_topic) == ("transform", "b")
