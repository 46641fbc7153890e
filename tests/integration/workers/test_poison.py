"""Poison records against the real Kafka and Prometheus; no retry lane is configured.

The poison is real: Prometheus 2.42 answers a remote write of a sample far older than
its head block with HTTP 500 ``too old sample``, every time, while it stores the
samples of now. The ``prometheus_remote_write`` sink sends one request per record, so
the 500 is pinned on its record (``Delivered.refused``): evidence. Such a record is
dead-lettered once the backend refused it so, while taking others of the same attempt,
``retry.partial_max_attempts`` times. Retried alone, it gets others only from the
widening: newer records of its partition, which the worker keeps appending to its batch
while they arrive.

Backpressure that is no evidence (an Elasticsearch index block's per-item 429) is held
instead: ``test_retry_lane.test_without_a_lane_per_item_backpressure_is_held``.
"""

from __future__ import annotations

import time

import httpx

from tests.integration.pipeline import (
    Worker,
    create_topics,
    dead_letters,
    produce,
    remote_write,
    series_ids,
    time_series,
    wait_for,
)

BOUND = 3  # retry.partial_max_attempts
SINK = "prometheus_remote_write"
TWO_DAYS_MS = 2 * 86_400_000


def _metric(worker: Worker, name: str, **labels: str) -> float:
    try:
        return worker.metric(name, **labels)
    except httpx.TransportError:  # still starting
        return 0.0


class Poisoned:
    """One test's topic of remote-write records for the real Prometheus: ``"p"`` a
    sample from two days ago (refused with a 500 every time), ``"g"`` one of now."""

    def __init__(self, stack, unique: str) -> None:
        self.stack = stack
        self.bootstrap = stack("kafka", "bootstrap")
        self.topic = unique
        self.metric = f"poison_{unique}"
        self.next = 0
        self.good: set[str] = set()
        create_topics(self.bootstrap, (unique, 1))

    def produce(self, kinds: str) -> None:
        now = int(time.time() * 1000)
        messages = []
        for kind in kinds:
            sid = f"{kind}{self.next}"
            ts = now - TWO_DAYS_MS if kind == "p" else now
            messages.append(
                remote_write(
                    [time_series({"__name__": self.metric, "sid": sid}, (float(self.next), ts))],
                    key=sid.encode(),
                )
            )
            if kind == "g":
                self.good.add(sid)
            self.next += 1
        produce(self.bootstrap, self.topic, messages)

    def stored(self) -> set[str]:
        return series_ids(self.stack("prometheus", "http"), self.metric)

    def trickle_until(self, done, timeout: float, what: str) -> None:
        """Good records, one a second (so that attempts get some each), until ``done``."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self.produce("g")
            time.sleep(1.0)


def _settings() -> dict:
    return {
        "batch": {"max_records": 50, "max_wait_s": 0.3},
        "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0, "partial_max_attempts": BOUND},
    }


def _check_letters(poisoned: Poisoned, worker: Worker, offsets: list[int]) -> None:
    letters = dead_letters(poisoned.bootstrap, worker.dead_letter_topic)
    assert (
        sorted(int(dict(d.headers)["ferryman.source"].rsplit(b"/", 1)[1]) for d in letters)
        == offsets
    )
    for letter in letters:
        error = dict(letter.headers)["ferryman.error"]
        assert error.startswith(b"HTTP 500: too old sample"), error
        assert f"refused {BOUND} times while the backend took others".encode() in error


def test_a_lone_poison_record_holds_until_records_behind_it_are_stored(
    stack, unique, worker
) -> None:
    poisoned = Poisoned(stack, unique)
    poisoned.produce("p")  # alone on its partition
    running = worker(SINK, unique, {"url": stack("prometheus", "remote_write")}, **_settings())

    # Refused past the bound with nothing behind it: held, not dead-lettered.
    wait_for(
        lambda: _metric(running, "ferryman_errors_total", error_type="retry_partial") >= 2 * BOUND,
        90,
        f"{2 * BOUND} attempts refused",
    )
    assert running.committed() == 0
    assert _metric(running, "ferryman_records_dead_lettered_total") == 0
    assert _metric(running, "ferryman_batches_widened_total") == 0

    # Good records arrive behind it: its batch is widened with them, Prometheus stores
    # them and refuses the poison again, BOUND times.
    poisoned.trickle_until(
        lambda: _metric(running, "ferryman_records_dead_lettered_total"),
        120,
        "the poison dead-lettered",
    )
    wait_for(lambda: running.committed() == poisoned.next, 60, "every offset committed")
    _check_letters(poisoned, running, [0])
    assert wait_for(lambda: poisoned.stored() == poisoned.good, 30, "the good series stored")
    assert _metric(running, "ferryman_batches_widened_total") >= BOUND
    assert _metric(running, "ferryman_records_dead_lettered_total") == 1
    assert running.terminate() == 0
    assert "widened a batch whose records were refused" in running.output()


def test_poison_amid_good_records_is_dead_lettered_and_the_rest_stored(
    stack, unique, worker
) -> None:
    poisoned = Poisoned(stack, unique)
    poisoned.produce("gpgpgp")
    running = worker(SINK, unique, {"url": stack("prometheus", "remote_write")}, **_settings())
    poisoned.trickle_until(
        lambda: _metric(running, "ferryman_records_dead_lettered_total") >= 3,
        120,
        "the 3 poison records dead-lettered",
    )
    wait_for(lambda: running.committed() == poisoned.next, 60, "every offset committed")
    _check_letters(poisoned, running, [1, 3, 5])
    assert wait_for(lambda: poisoned.stored() == poisoned.good, 30, "the good series stored")
    assert _metric(running, "ferryman_records_dead_lettered_total") == 3
