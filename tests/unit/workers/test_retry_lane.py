"""The retry lane's pure parts: settings, the message format, the backoff schedule and
the max-age decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.errors import ConfigError
from workers.records import Record
from workers.retry_lane import LaneMessage, backoff_delay, next_delay
from workers.settings import RetryLaneSettings, load_settings


def _lane(**overrides: object) -> RetryLaneSettings:
    return RetryLaneSettings.model_validate({"redis_url": "redis://127.0.0.1:6379/0", **overrides})


# ---- settings ---------------------------------------------------------------------------


def test_the_lane_is_off_unless_configured_and_defaults_per_function(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("kafka:\n  input_topic: a\n")
    assert load_settings(path, function="loki").retry_lane is None
    path.write_text("kafka:\n  input_topic: a\nretry_lane:\n  redis_url: redis://r:6379/0\n")
    lane = load_settings(path, function="loki").retry_lane
    assert lane is not None
    assert lane.queue_for("loki") == "retry.loki"
    assert (lane.namespace, lane.budget_attempts, lane.budget_s) == ("ferryman", 3, 30.0)
    assert (lane.min_backoff_s, lane.max_backoff_s, lane.max_age_s) == (1.0, 300.0, 86400.0)


def test_the_lane_can_be_configured_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("kafka:\n  input_topic: a\n")
    monkeypatch.setenv("FERRYMAN_RETRY_LANE__REDIS_URL", "redis://lane:6379/1")
    monkeypatch.setenv("FERRYMAN_RETRY_LANE__QUEUE", "custom")
    lane = load_settings(path, function="loki").retry_lane
    assert lane is not None
    assert (lane.redis_url, lane.queue_for("loki")) == ("redis://lane:6379/1", "custom")


def test_lane_errors_are_listed_by_their_dotted_path(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "kafka:\n  input_topic: a\nretry_lane:\n  redis_url: http://r\n"
        "  max_age_s: 999999999\n  queue: 'no spaces'\n  bogus: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, function="loki")
    assert info.value.errors == [
        "retry_lane.redis_url: Value error, redis_url must start with redis://, rediss:// "
        "or unix://",
        "retry_lane.queue: String should match pattern '^[A-Za-z_][A-Za-z0-9._-]*$'",
        "retry_lane.max_age_s: Input should be less than or equal to 604800",
        "retry_lane.bogus: Extra inputs are not permitted",
    ]


def test_a_budget_is_required_and_backoffs_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="set budget_attempts, budget_s or both"):
        _lane(budget_attempts=None, budget_s=None)
    with pytest.raises(ValueError, match="min_backoff_s is greater than max_backoff_s"):
        _lane(min_backoff_s=10, max_backoff_s=5)
    assert _lane(budget_attempts=None).budget_s == 30.0
    assert _lane(budget_s=None).budget_attempts == 3


# ---- the message ------------------------------------------------------------------------

_text = st.text(max_size=20)
_bytes = st.binary(max_size=64)
_records = st.builds(
    Record,
    topic=st.text(min_size=1, max_size=20),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    key=st.none() | _bytes,
    value=_bytes,
    headers=st.lists(st.tuples(_text, _bytes), max_size=5).map(tuple),
    timestamp_ms=st.integers(0, 2**63 - 1),
)


@given(
    record=_records,
    function=_text,
    first_failure=st.floats(0, 4e9),
    attempts=st.integers(0, 10**6),
    lane_attempts=st.integers(0, 10**6),
    error=_text,
)
def test_a_message_survives_json_with_arbitrary_bytes_and_headers(
    record: Record,
    function: str,
    first_failure: float,
    attempts: int,
    lane_attempts: int,
    error: str,
) -> None:
    message = LaneMessage(record, function, first_failure, attempts, lane_attempts, error)
    # dramatiq's encoder is JSON: the payload must survive it unchanged.
    wire = json.dumps(message.to_payload(), separators=(",", ":")).encode()
    assert LaneMessage.from_payload(json.loads(wire)) == message


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        {"v": 2},
        {"v": 1},
        {"v": 1, "function": "f"},
    ],
)
def test_anything_else_is_refused_as_a_value_error(payload: object) -> None:
    with pytest.raises(ValueError):
        LaneMessage.from_payload(payload)


def test_bad_base64_and_wrong_types_are_refused() -> None:
    good = LaneMessage(Record("t", 0, 1, None, b"v"), "f", 1.0, 1).to_payload()
    for field, bad in [
        ("value", "not base64!"),
        ("partition", "0"),
        ("offset", True),
        ("headers", [["k"]]),
        ("topic", 3),
    ]:
        with pytest.raises(ValueError):
            LaneMessage.from_payload({**good, field: bad})


# ---- when to try again ------------------------------------------------------------------


def test_the_backoff_doubles_from_min_to_max() -> None:
    lane = _lane(min_backoff_s=1, max_backoff_s=30)
    assert [backoff_delay(n, lane) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(10_000, lane) == 30


def test_jitter_shortens_by_at_most_half_and_a_hint_is_a_floor() -> None:
    lane = _lane(min_backoff_s=1, max_backoff_s=30)
    assert backoff_delay(3, lane, jitter=0.0) == 4
    assert backoff_delay(3, lane, jitter=0.5) == 6
    assert backoff_delay(3, lane, hint=20.0) == 20
    assert backoff_delay(3, lane, hint=2.0) == 8
    assert backoff_delay(10, lane, hint=120.0) == 120  # the backend asked: longer than max


def test_max_age_cuts_the_last_wait_short_then_gives_up() -> None:
    lane = _lane(min_backoff_s=10, max_backoff_s=100, max_age_s=60)
    message = LaneMessage(
        Record("t", 0, 0, None, b""), "f", first_failure=1000.0, attempts=3, lane_attempts=2
    )
    assert next_delay(message, now=1001.0, settings=lane) == 40
    assert next_delay(message, now=1030.0, settings=lane) == 30  # last try at max_age
    assert next_delay(message, now=1059.5, settings=lane) == 0.5
    assert next_delay(message, now=1060.0, settings=lane) is None  # dead-letter it
    assert next_delay(message, now=5000.0, settings=lane) is None
