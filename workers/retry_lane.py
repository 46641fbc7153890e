"""The retry lane: records a backend refuses for now wait in Redis, not on the partition.

The runtime hands a record to the lane (:meth:`Lane.send`) once its in-process budget
is spent, and commits its offset only after Redis acknowledged the enqueue. The retry
worker (:mod:`workers.retry_worker`) takes it from there.

A lane message is one dramatiq message on the queue ``retry.<function>`` (namespace
``ferryman``) whose single argument is the JSON object of :meth:`LaneMessage.to_payload`:
the record (bytes as base64), the function, the time of its first refusal and the
attempts made so far. Delays use dramatiq's delay queue (``<queue>.DQ``).

What is decided here is pure: :func:`backoff_delay` (the schedule) and
:func:`next_delay` (wait again, or give up at ``max_age_s``).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from .records import Record
from .settings import RetryLaneSettings

__all__ = [
    "ACTOR",
    "Lane",
    "LaneBroker",
    "LaneFull",
    "LaneMessage",
    "LaneUnavailable",
    "backoff_delay",
    "make_broker",
    "next_delay",
]

#: The dramatiq actor name every lane message is addressed to.
ACTOR = "ferryman_retry"
_VERSION = 1
_MAX_DELAY_MS = 7 * 86_400_000 - 1000


class LaneUnavailable(Exception):
    """Raised when Redis did not acknowledge an enqueue (unreachable, timed out, refused)."""


class LaneFull(Exception):
    """Raised when the lane already holds ``max_in_flight`` records."""


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"bad base64: {exc}") from None


@dataclass(frozen=True, slots=True)
class LaneMessage:
    """One refused record on its way through the lane.

    ``first_failure`` is wall-clock (Unix seconds): the lane spans processes.
    ``attempts`` counts every delivery attempt, in process and in the lane;
    ``lane_attempts`` just those in the lane (they drive the backoff).
    """

    record: Record
    function: str
    first_failure: float
    attempts: int
    lane_attempts: int = 0
    last_error: str = ""

    def to_payload(self) -> dict[str, Any]:
        r = self.record
        return {
            "v": _VERSION,
            "function": self.function,
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "key": _b64(r.key),
            "value": _b64(r.value),
            "headers": [[name, _b64(value)] for name, value in r.headers],
            "timestamp_ms": r.timestamp_ms,
            "first_failure": self.first_failure,
            "attempts": self.attempts,
            "lane_attempts": self.lane_attempts,
            "last_error": self.last_error,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> LaneMessage:
        """The inverse of :meth:`to_payload`; raises ValueError for anything else."""
        if not isinstance(payload, Mapping) or payload.get("v") != _VERSION:
            raise ValueError(f"not a version {_VERSION} lane message: {payload!r:.200}")
        try:
            headers = tuple(
                (_str(name), _unb64(value) or b"") for name, value in payload["headers"]
            )
            value = _unb64(payload["value"])
            record = Record(
                _str(payload["topic"]),
                _int(payload["partition"]),
                _int(payload["offset"]),
                _unb64(payload["key"]),
                b"" if value is None else value,
                headers,
                _int(payload["timestamp_ms"]),
            )
            return cls(
                record,
                _str(payload["function"]),
                float(payload["first_failure"]),
                _int(payload["attempts"]),
                _int(payload["lane_attempts"]),
                _str(payload["last_error"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed lane message: {exc!r}") from None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r:.50}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r:.50}")
    return value


# ---- when to try again -------------------------------------------------------------------


def backoff_delay(
    lane_attempts: int, settings: RetryLaneSettings, hint: float | None = None, jitter: float = 1.0
) -> float:
    """Seconds before lane attempt ``lane_attempts + 1``.

    ``min_backoff_s`` doubled per lane attempt made, capped at ``max_backoff_s``, scaled
    by ``0.5 + 0.5 * jitter`` (``jitter`` in [0, 1]; 1 gives the bare schedule) so
    records refused together do not come back together; never shorter than the delay
    the backend asked for (``hint``).
    """
    base = min(settings.max_backoff_s, settings.min_backoff_s * 2.0 ** min(lane_attempts, 60))
    delay = base * (0.5 + 0.5 * min(1.0, max(0.0, jitter)))
    return max(delay, hint) if hint is not None else delay


def next_delay(
    message: LaneMessage,
    now: float,
    settings: RetryLaneSettings,
    hint: float | None = None,
    jitter: float = 1.0,
) -> float | None:
    """Seconds until the next attempt at a record just refused again, or None when it is
    ``max_age_s`` old and goes to the dead-letter topic. The wait is cut short so that a
    last attempt happens right at ``max_age_s``."""
    remaining = settings.max_age_s - (now - message.first_failure)
    if remaining <= 0:
        return None
    return min(backoff_delay(message.lane_attempts, settings, hint, jitter), remaining)


# ---- Redis ------------------------------------------------------------------------------


class LaneBroker(RedisBroker):
    """dramatiq's Redis broker, with queue maintenance that can be asked for.

    Messages a dead retry worker held (its heartbeat is older than
    ``heartbeat_timeout_s``) go back to their queue when maintenance runs on that
    queue. dramatiq runs it on a random share of Redis calls only; :meth:`maintain`
    runs it now, so a retry worker restarted after a kill -9 takes over its
    predecessor's messages within a heartbeat timeout instead of at random.
    """

    _forced = threading.local()

    def _should_do_maintenance(self, command: str) -> int:
        if getattr(self._forced, "on", False):
            return 1
        return int(super()._should_do_maintenance(command))

    def maintain(self, queues: Sequence[str]) -> None:
        """Run maintenance on each of ``queues`` (raises redis errors)."""
        self._forced.on = True
        try:
            for queue in queues:
                self.do_qsize(queue)
        finally:
            self._forced.on = False


def make_broker(settings: RetryLaneSettings, middleware: Sequence[Middleware] = ()) -> LaneBroker:
    """A dramatiq broker on the lane's Redis; nothing connects before the first call."""
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
    )
    # Besides the retry worker's own maintain() calls, maintenance runs on 1 % of Redis
    # calls rather than dramatiq's 0.1 %: a lane sees few calls.
    broker = LaneBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=settings.namespace,
        middleware=list(middleware),
        maintenance_chance=10_000,
        heartbeat_timeout=int(settings.heartbeat_timeout_s * 1000),
    )
    return broker


class Lane:
    """The runtime's side of the lane: enqueue refused records and count what it holds."""

    def __init__(
        self, settings: RetryLaneSettings, function: str, broker: LaneBroker | None = None
    ) -> None:
        self.settings = settings
        self.function = function
        self.queue = settings.queue_for(function)
        self.broker = broker if broker is not None else make_broker(settings)

    def describe(self) -> str:
        return f"{self.settings.namespace}:{self.queue} on {_redacted(self.settings.redis_url)}"

    def held(self) -> int:
        """Records waiting in the lane (ready, delayed, or being retried right now)."""
        ready, delayed = self._both("hlen", ".msgs")
        return ready + delayed

    def lengths(self) -> tuple[int, int]:
        """Lengths of the Redis lists KEDA scales on: ready and delayed message ids."""
        return self._both("llen", "")

    def queues(self) -> tuple[str, str]:
        """The lane's dramatiq queues: ready, then delayed."""
        return self.queue, f"{self.queue}.DQ"

    def _both(self, command: str, suffix: str) -> tuple[int, int]:
        """``command`` on the ready and the delayed queue's ``suffix`` key, in one trip."""
        ns = self.settings.namespace
        try:
            pipe = self.broker.client.pipeline(transaction=False)
            for queue in self.queues():
                getattr(pipe, command)(f"{ns}:{queue}{suffix}")
            ready, delayed = pipe.execute()
        except redis.RedisError as exc:
            raise LaneUnavailable(f"Redis: {exc}") from exc
        return int(ready), int(delayed)

    def maintain(self) -> None:
        """Put the messages of dead retry workers back in the lane's queues."""
        try:
            self.broker.maintain(self.queues())
        except redis.RedisError as exc:
            raise LaneUnavailable(f"Redis: {exc}") from exc

    def send(self, message: LaneMessage, delay_s: float) -> None:
        """Enqueue ``message`` to be tried in ``delay_s`` seconds; returns once Redis has
        acknowledged it. Raises :class:`LaneUnavailable` otherwise."""
        out: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.queue,
            actor_name=ACTOR,
            args=(message.to_payload(),),
            kwargs={},
            options={},
        )
        # dramatiq refuses delays of seven days or more; max_age_s is at most that anyway.
        delay_ms = min(max(0, int(delay_s * 1000)), _MAX_DELAY_MS)
        try:
            self.broker.enqueue(out, delay=delay_ms or None)
        except redis.RedisError as exc:
            raise LaneUnavailable(f"Redis: {exc}") from exc

    def close(self) -> None:
        self.broker.client.close()


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest
