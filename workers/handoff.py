"""Records the backend refuses for now while it takes others of their batch.

Such refusals (``Delivered.retry``) are told apart from a backend that is down or
pushing back. They leave the partition one of two ways, after which the batch can be
committed:

* to the retry lane, when one is configured, the backend took some records of the
  batch (``progress``, at any attempt) and the in-process budget is spent
  (:class:`LaneHandOff`); Redis must acknowledge every record, else retrying in
  process goes on;
* to the dead-letter topic, when no lane is configured, only on evidence
  (:meth:`Refusals.overdue`): in the attempt that refused the record, the backend took
  other records of that attempt, and the sink pinned the refusal on the record itself
  (``Delivered.refused``: it was sent and answered with a status that is not
  backpressure or unavailability). It goes once it was so refused
  ``retry.partial_max_attempts`` times, or ``retry.partial_max_age_s`` after the first
  such refusal, and is refused so in the current attempt, with the backend's reason.

Everything else waits, for as long as it takes: an outage or backpressure (408, 429,
502, 503, 504, transport errors, :class:`~workers.errors.Throttled`, per-item 429/503),
including one that starts after the backend took the first records of a batch, and
records handed back without being sent. A batch of which nothing was delivered never
goes to the lane: it holds the partition, so an outage floods neither Redis nor the
dead-letter topic. Without a lane, records handed back past the attempt bound
(attempts, on evidence or not) widen their batch with newer records of their
partitions (:mod:`.widening`): retried alone, a record has no others in its attempt,
and the backend taking some of the newer ones can show poison for what it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from .records import Delivered, Record
from .retry_lane import Lane, LaneFull, LaneMessage, LaneUnavailable, backoff_delay
from .runtime_metrics import RuntimeMetrics
from .settings import RetryLaneSettings, RetrySettings

__all__ = ["LaneHandOff", "Refusals"]

log = logging.getLogger("ferryman.worker")

_Key = tuple[str, int, int]


def _key(record: Record) -> _Key:
    return record.topic, record.partition, record.offset


class Refusals:
    """What one batch's attempts tell about the records refused for now.

    Per batch: whether the backend ever took a record of it (``progress``, for the
    lane) and whether it took one in the last attempt (``progressed``); when it first
    refused some (wall clock, for the lane); which records Redis holds now. Per record:
    how often and since when it was handed back (attempts: the lane's budget and the
    widening's trigger), and how often and since when it was refused on evidence: in an
    attempt in which the backend took other records, refused by an answer about the
    record itself (``Delivered.refused``).
    """

    def __init__(self, clock: Callable[[], float], wall: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.wall = wall
        self.progress = False
        self.progressed = False
        self.first_failure = 0.0
        self.handed: list[Record] = []
        self.reason = ""
        self._times: dict[_Key, int] = {}
        self._since: dict[_Key, float] = {}
        self._evidence: dict[_Key, int] = {}
        self._evidence_since: dict[_Key, float] = {}
        self._evidence_now: dict[_Key, str] = {}

    def note(self, pending: Sequence[Record], result: Delivered) -> None:
        """Count one attempt at ``pending`` that returned ``result``."""
        if not self.first_failure:
            self.first_failure = self.wall()
        retry = {_key(r) for r in result.retry}
        unfinished = retry | {_key(r) for r, _ in result.dead}
        self.progressed = any(_key(r) not in unfinished for r in pending)
        self.progress = self.progress or self.progressed
        now = self.clock()
        for record in result.retry:
            key = _key(record)
            self._times[key] = self._times.get(key, 0) + 1
            self._since.setdefault(key, now)
        self._evidence_now = {}
        if self.progressed:
            for record, why in result.refused:
                key = _key(record)
                if key in retry and key not in self._evidence_now:
                    self._evidence[key] = self._evidence.get(key, 0) + 1
                    self._evidence_since.setdefault(key, now)
                    self._evidence_now[key] = why
        self.reason = result.retry_reason

    def times(self, record: Record) -> int:
        """How often the backend handed ``record`` back (refused or not sent)."""
        return self._times.get(_key(record), 0)

    def age(self, record: Record) -> float:
        """Seconds since the backend first handed ``record`` back."""
        since = self._since.get(_key(record))
        return 0.0 if since is None else self.clock() - since

    def evidence(self, record: Record) -> int:
        """How often the backend refused ``record`` on evidence."""
        return self._evidence.get(_key(record), 0)

    def evidence_age(self, record: Record) -> float:
        """Seconds since the backend first refused ``record`` on evidence."""
        since = self._evidence_since.get(_key(record))
        return 0.0 if since is None else self.clock() - since

    def overdue(
        self, refused: Sequence[Record], settings: RetrySettings
    ) -> list[tuple[Record, str]]:
        """The records of ``refused`` to dead-letter as poison, each with the reason: those
        refused on evidence in the last attempt, ``retry.partial_max_attempts`` times or
        for ``retry.partial_max_age_s`` since the first time."""
        over: list[tuple[Record, str]] = []
        for record in refused:
            said = self._evidence_now.get(_key(record))
            if said is None:
                continue
            count, age = self.evidence(record), self.evidence_age(record)
            if (
                settings.partial_max_attempts is not None and count >= settings.partial_max_attempts
            ) or (settings.partial_max_age_s is not None and age >= settings.partial_max_age_s):
                over.append(
                    (
                        record,
                        f"{said or f'refused for now {count} times'} (refused "
                        f"{count} times while the backend took others of its "
                        f"batch, over {age:.0f}s)",
                    )
                )
        return over

    def any_past_bound(self, refused: Sequence[Record], settings: RetrySettings) -> bool:
        """Whether a record of ``refused`` was handed back ``retry.partial_max_attempts``
        times or for ``partial_max_age_s``, on evidence or not."""
        return any(self._past_bound(record, settings) for record in refused)

    def _past_bound(self, record: Record, settings: RetrySettings) -> bool:
        return (
            settings.partial_max_attempts is not None
            and self.times(record) >= settings.partial_max_attempts
        ) or (
            settings.partial_max_age_s is not None
            and self.age(record) >= settings.partial_max_age_s
        )


class LaneHandOff:
    """Hands refused records to the retry lane once the in-process budget is spent."""

    def __init__(
        self,
        lane: Lane,
        settings: RetryLaneSettings,
        function: str,
        clock: Callable[[], float],
        metrics: RuntimeMetrics,
    ) -> None:
        self.lane = lane
        self.settings = settings
        self.function = function
        self.clock = clock
        self.metrics = metrics

    def due(self, refusals: Refusals, attempts: int, started: float) -> bool:
        """Whether the records refused now should leave for the lane: the backend took
        some of this batch, and the in-process budget is spent."""
        return refusals.progress and self.budget_spent(attempts, started)

    def budget_spent(self, attempts: int, started: float) -> bool:
        """Whether ``attempts`` attempts since ``started`` spent the in-process budget."""
        s = self.settings
        return (s.budget_attempts is not None and attempts >= s.budget_attempts) or (
            s.budget_s is not None and self.clock() - started >= s.budget_s
        )

    def send(
        self, refusals: Refusals, refused: Sequence[Record], hint: float | None, attempts: int
    ) -> list[Record]:
        """Enqueue ``refused`` on the lane; returns the records still to retry in process
        (none once Redis acknowledged them all)."""
        delay = backoff_delay(0, self.settings, hint)
        left = list(refused)
        try:
            if self.lane.held() + len(left) > self.settings.max_in_flight:
                raise LaneFull(f"the lane holds {self.settings.max_in_flight} records or more")
            while left:
                self.lane.send(
                    LaneMessage(
                        left[0],
                        self.function,
                        refusals.first_failure,
                        attempts,
                        last_error=refusals.reason or "refused for now in process",
                    ),
                    delay,
                )
                refusals.handed.append(left.pop(0))
                self.metrics.count_handed(1)
        except (LaneUnavailable, LaneFull) as exc:
            self.metrics.count_error(type(exc).__name__, "hand_off")
            log.warning(
                "could not hand %d refused records to the retry lane %s (%s); "
                "retrying them in process",
                len(left),
                self.lane.describe(),
                exc,
            )
            return left
        log.info(
            "handed %d records refused for now to the retry lane %s after %d attempts",
            len(refused),
            self.lane.describe(),
            attempts,
        )
        return left
