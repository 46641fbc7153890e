"""Records the backend refuses for now while it takes others of their batch.

Such refusals (``Delivered.retry``) are told apart from a backend that is down: once
the backend took some records of a batch (``progress``), the ones it keeps refusing
are the records' own trouble, not an outage. They leave the partition one of two
ways, after which the batch can be committed:

* to the retry lane, when one is configured and the in-process budget is spent
  (:class:`LaneHandOff`); Redis must acknowledge every record, else retrying in
  process goes on;
* to the dead-letter topic, when no lane is configured and a record was refused
  ``retry.partial_max_attempts`` times or ``retry.partial_max_age_s`` after its first
  refusal (:meth:`Refusals.overdue`), with the backend's reason.

A batch of which nothing was delivered never takes either way: it holds the
partition until the backend is back, so an outage floods neither Redis nor the
dead-letter topic. Refused past the bound all the same, it is widened with newer
records of its partitions (:mod:`.widening`); once the backend takes some of those,
the old ones take one of the ways above.
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
    """What one batch's attempts tell about the records refused for now: whether the
    backend took any record of the batch, when it first refused some (wall clock, for
    the lane), how often and since when it refused each record, and which records
    Redis holds now."""

    def __init__(self, clock: Callable[[], float],
                 wall: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.wall = wall
        self.progress = False
        self.first_failure = 0.0
        self.handed: list[Record] = []
        self.reason = ""
        self._times: dict[_Key, int] = {}
        self._since: dict[_Key, float] = {}

    def note(self, pending: Sequence[Record], result: Delivered) -> None:
        """Count one attempt at ``pending`` that returned ``result``."""
        if not self.first_failure:
            self.first_failure = self.wall()
        unfinished = {_key(r) for r in (*result.retry, *(d for d, _ in result.dead))}
        if any(_key(r) not in unfinished for r in pending):
            self.progress = True
        now = self.clock()
        for record in result.retry:
            key = _key(record)
            self._times[key] = self._times.get(key, 0) + 1
            self._since.setdefault(key, now)
        self.reason = result.retry_reason

    def times(self, record: Record) -> int:
        """How often the backend refused ``record`` for now."""
        return self._times.get(_key(record), 0)

    def age(self, record: Record) -> float:
        """Seconds since the backend first refused ``record`` for now."""
        since = self._since.get(_key(record))
        return 0.0 if since is None else self.clock() - since

    def overdue(self, refused: Sequence[Record],
                settings: RetrySettings) -> list[tuple[Record, str]]:
        """The records of ``refused`` past the bound of in-process partial retries, each
        with the reason it is dead-lettered; none unless the backend took others of
        the batch."""
        if not self.progress:
            return []
        over: list[tuple[Record, str]] = []
        for record in refused:
            if self._past_bound(record, settings):
                times, age = self.times(record), self.age(record)
                said = self.reason or f"refused for now {times} times"
                over.append((record, f"{said} (refused {times} times over {age:.0f}s while "
                                     "the backend took others of its batch)"))
        return over

    def any_past_bound(self, refused: Sequence[Record], settings: RetrySettings) -> bool:
        """Whether a record of ``refused`` was refused past the bound of in-process
        partial retries, whether or not the backend took others of the batch."""
        return any(self._past_bound(record, settings) for record in refused)

    def _past_bound(self, record: Record, settings: RetrySettings) -> bool:
        return ((settings.partial_max_attempts is not None
                 and self.times(record) >= settings.partial_max_attempts)
                or (settings.partial_max_age_s is not None
                    and self.age(record) >= settings.partial_max_age_s))


class LaneHandOff:
    """Hands refused records to the retry lane once the in-process budget is spent."""

    def __init__(self, lane: Lane, settings: RetryLaneSettings, function: str,
                 clock: Callable[[], float], metrics: RuntimeMetrics) -> None:
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
        return ((s.budget_attempts is not None and attempts >= s.budget_attempts)
                or (s.budget_s is not None and self.clock() - started >= s.budget_s))

    def send(self, refusals: Refusals, refused: Sequence[Record], hint: float | None,
             attempts: int) -> list[Record]:
        """Enqueue ``refused`` on the lane; returns the records still to retry in process
        (none once Redis acknowledged them all)."""
        delay = backoff_delay(0, self.settings, hint)
        left = list(refused)
        try:
            if self.lane.held() + len(left) > self.settings.max_in_flight:
                raise LaneFull(f"the lane holds {self.settings.max_in_flight} records or more")
            while left:
                self.lane.send(LaneMessage(left[0], self.function, refusals.first_failure,
                                           attempts,
                                           last_error=refusals.reason
                                           or "refused for now in process"), delay)
                refusals.handed.append(left.pop(0))
                self.metrics.count_handed(1)
        except (LaneUnavailable, LaneFull) as exc:
            self.metrics.count_error(type(exc).__name__, "hand_off")
            log.warning("could not hand %d refused records to the retry lane %s (%s); "
                        "retrying them in process", len(left), self.lane.describe(), exc)
            return left
        log.info("handed %d records refused for now to the retry lane %s after %d attempts",
                 len(refused), self.lane.describe(), attempts)
        return left
