"""``pipeline_stages`` configuration: Promtail's syntax, every error by its path,
and the time formats of the timestamp stage."""

from __future__ import annotations

import datetime as dt
import textwrap
import zoneinfo
from pathlib import Path
from typing import Any

import pytest

from edge.logs.config import load_config
from edge.logs.stages import STAGE_NAMES, FilePipeline, StageConfig, StageMetrics, build_stages
from edge.logs.stages.timestamps import compile_format, parse_rfc3339
from edge.logs.tailer import Line
from ferryman.errors import ConfigError
from ferryman.telemetry import Registry

PROMTAIL = """
server: {http_listen_port: 9080}
positions: {filename: /tmp/positions.yaml}
scrape_configs:
  - job_name: pods
    static_configs:
      - labels: {job: pods, __path__: /var/log/pods/*/*/*.log}
    pipeline_stages:
      - cri: {}
      - multiline:
          firstline: '^\\d{4}-\\d{2}-\\d{2}'
          max_wait_time: 3s
      - json:
          expressions:
            level:
            msg: payload.message
      - logfmt: {mapping: {user: }}
      - regex: {expression: '(?P<status>\\d{3})', source: msg}
      - labels: {level: , status: }
      - static_labels: {team: shop}
      - timestamp: {source: time, format: RFC3339Nano, action_on_failure: skip}
      - drop: {source: level, value: debug, drop_counter_reason: debug}
      - drop: {older_than: 24h}
      - output: {source: msg}
      - labeldrop: [filename]
  - job_name: docker
    static_configs:
      - labels: {__path__: /var/lib/docker/containers/*/*.log}
    pipeline_stages:
      - docker:
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def _errors(tmp_path: Path, stages: str) -> list[str]:
    body = (
        "scrape_configs:\n  - job_name: a\n    static_configs: [{labels: {__path__: x}}]\n"
        "    pipeline_stages:\n" + textwrap.indent(textwrap.dedent(stages), "      ")
    )
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, body)
    return caught.value.errors


def test_a_promtail_config_loads(tmp_path: Path) -> None:
    config = _load(tmp_path, PROMTAIL)
    stages = config.scrape_configs[0].pipeline_stages  # type: ignore[attr-defined]
    assert [s.name for s in stages] == [
        "cri",
        "multiline",
        "json",
        "logfmt",
        "regex",
        "labels",
        "static_labels",
        "timestamp",
        "drop",
        "drop",
        "output",
        "labeldrop",
    ]
    assert stages[1].multiline.max_wait_time == 3.0
    assert stages[2].json_.expressions == {"level": None, "msg": "payload.message"}
    assert stages[5].labels.mapping() == {"level": "level", "status": "status"}
    assert config.scrape_configs[1].pipeline_stages[0].name == "docker"  # type: ignore


def test_every_problem_is_listed_by_dotted_path(tmp_path: Path) -> None:
    errors = _errors(
        tmp_path,
        """\
        - cri: {max_partial_lines: 0}
        - jsn: {}
        - match: {selector: '{app="x"}'}
        - json: {expresions: {a: b}}
        - json: {expressions: {a: "b..c"}}
        - regex: {expression: "(unclosed"}
        - regex: {expression: "no groups"}
        - timestamp: {source: t, format: "not a layout", location: Mars/Base}
        - timestamp: {source: t, format: Unix, action_on_failure: explode}
        - drop: {value: x}
        - drop: {}
        - multiline: {max_wait_time: soon}
        - labels: {"bad-name": x}
        - {json: {expressions: {}}, labels: {a: ""}}
        - output: {}
        - labeldrop: ["ok", "1bad"]
        """,
    )
    prefix = "scrape_configs.0.pipeline_stages"
    expected = [
        f"{prefix}.0.cri.max_partial_lines:",
        f"{prefix}.1: Value error, unknown stage 'jsn'",
        f"{prefix}.2: Value error, stage 'match' is not supported",
        f"{prefix}.3.json.expressions: Field required",
        f"{prefix}.3.json.expresions: Extra inputs",
        f"{prefix}.4.json.expressions: Value error, a: cannot read path",
        f"{prefix}.5.regex.expression: Value error, invalid regex",
        f"{prefix}.6.regex.expression: Value error, the expression has no named",
        f"{prefix}.7.timestamp.format: Value error, 'not a layout' is neither",
        f"{prefix}.7.timestamp.location: Value error, unknown time zone 'Mars/Base'",
        f"{prefix}.8.timestamp.action_on_failure:",
        f"{prefix}.9.drop: Value error, value needs a source",
        f"{prefix}.10.drop: Value error, set at least one of",
        f"{prefix}.11.multiline.firstline: Field required",
        f"{prefix}.11.multiline.max_wait_time: Value error, not a duration",
        f"{prefix}.12.labels: Value error, invalid label names: bad-name",
        f"{prefix}.13: Value error, a stage is a mapping with exactly one key, got 2",
        f"{prefix}.14.output.source: Field required",
        f"{prefix}.15.labeldrop: Value error, invalid label names: 1bad",
    ]
    for start in expected:
        assert any(e.startswith(start) for e in errors), (start, errors)
    assert len(errors) == len(expected), errors


def test_unknown_stage_error_names_the_known_ones(tmp_path: Path) -> None:
    (error,) = _errors(tmp_path, "- pack: {labels: [a]}\n- tempalte: {}\n")[1:]
    assert "known stages: cri, docker, json, logfmt, regex, labels" in error


@pytest.mark.parametrize(
    ("layout", "text", "expected"),
    [
        ("RFC3339", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00+00:00"),
        ("RFC3339", "2024-05-01T12:00:00.5+02:00", "2024-05-01T10:00:00.500000+00:00"),
        ("RFC3339Nano", "2024-05-01T10:00:00.000001Z", "2024-05-01T10:00:00.000001+00:00"),
        ("Unix", "1714557600", "2024-05-01T10:00:00+00:00"),
        ("Unix", "1714557600.25", "2024-05-01T10:00:00.250000+00:00"),
        ("UnixMs", "1714557600250", "2024-05-01T10:00:00.250000+00:00"),
        ("UnixUs", "1714557600000250", "2024-05-01T10:00:00.000250+00:00"),
        ("RFC1123", "Wed, 01 May 2024 10:00:00 GMT", "2024-05-01T10:00:00+00:00"),
        ("RFC1123Z", "Wed, 01 May 2024 12:00:00 +0200", "2024-05-01T10:00:00+00:00"),
        ("ANSIC", "Wed May  1 10:00:00 2024", "2024-05-01T10:00:00+00:00"),
        ("RFC822Z", "01 May 24 12:00 +0200", "2024-05-01T10:00:00+00:00"),
        ("2006-01-02 15:04:05.000", "2024-05-01 10:00:00.125", "2024-05-01T10:00:00.125000+00:00"),
        ("2006-01-02 15:04:05", "2024-05-01 10:00:00.5", "2024-05-01T10:00:00.500000+00:00"),
        ("02/Jan/2006:15:04:05 -0700", "01/May/2024:12:00:00 +0200", "2024-05-01T10:00:00+00:00"),
        (
            "2006-01-02T15:04:05.999999999Z07:00",
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00+00:00",
        ),
        ("Jan _2 2006 3:04:05 PM", "May  1 2024 1:00:00 PM", "2024-05-01T13:00:00+00:00"),
        ("January 2, 2006 15:04", "May 1, 2024 10:00", "2024-05-01T10:00:00+00:00"),
        ("2006-01-02 15:04:05,000", "2024-05-01 10:00:00,125", "2024-05-01T10:00:00.125000+00:00"),
    ],
)
def test_time_formats(layout: str, text: str, expected: str) -> None:
    stamp = compile_format(layout)(text, dt.UTC)
    assert stamp is not None
    assert dt.datetime.fromtimestamp(stamp / 1e9, dt.UTC).isoformat() == expected


def test_time_nanoseconds_location_and_failures() -> None:
    assert parse_rfc3339("2024-05-01T10:00:00.123456789Z") == 1_714_557_600_123_456_789
    assert compile_format("UnixNs")("1714557600123456789", dt.UTC) == 1_714_557_600_123_456_789
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    assert (
        compile_format("2006-01-02 15:04")("2024-05-01 12:00", berlin) == 1_714_557_600_000_000_000
    )
    # An explicit offset wins over the location.
    assert (
        compile_format("2006-01-02 15:04 -0700")("2024-05-01 10:00 +0000", berlin)
        == 1_714_557_600_000_000_000
    )
    assert compile_format("Stamp")("May  1 10:00:00", dt.UTC) is not None  # this year
    for layout, text in [
        ("RFC3339", "2024-02-30T10:00:00Z"),
        ("Unix", "12ab"),
        ("UnixMs", "1.5"),
        ("2006-01-02", "2024-13-01"),
        ("RFC3339", "yesterday"),
    ]:
        assert compile_format(layout)(text, dt.UTC) is None, (layout, text)


MINIMAL: dict[str, Any] = {
    "cri": {},
    "docker": None,
    "json": {"expressions": {"a": ""}},
    "logfmt": {"mapping": {"a": ""}},
    "regex": {"expression": "(?P<a>.)"},
    "labels": {"a": ""},
    "static_labels": {"a": "b"},
    "labeldrop": ["a"],
    "labelallow": ["a"],
    "timestamp": {"source": "a", "format": "Unix"},
    "drop": {"expression": "x"},
    "multiline": {"firstline": "^S"},
    "output": {"source": "a"},
}


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_every_stage_name_builds_and_runs(name: str) -> None:
    config = StageConfig.model_validate({name: MINIMAL[name]})
    assert config.name == name
    registry = Registry()
    metrics = StageMetrics(
        registry.counter("ferryman_errors_total", "", ["error_type", "stage"]),
        registry.counter("ferryman_lines_dropped_total", "", ["reason"]),
    )
    (stage,) = build_stages([config], metrics, 1000)
    assert stage.name == name
    pipeline = FilePipeline([stage], (1, 1), 0)
    pipeline.process([Line("S x", 4, 1, 1, False)], {"a": "1"}, [0], 0.0)
    pipeline.release(0.0)
    assert pipeline.held_start() is None
