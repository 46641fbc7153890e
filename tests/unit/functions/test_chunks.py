"""The one chunk-delivery loop: narrowing, blame, hand-back and its reason, and what
a refusal is evidence against."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import pytest

from functions._chunks import HandBack, deliver_chunks, delivered, evidence
from workers.outcome import Outcome, classify_http
from workers.records import Record

LOG = logging.getLogger("test")


@dataclass(frozen=True)
class Toy:
    units: tuple[tuple[int, str], ...]

    @property
    def owners(self) -> frozenset[int]:
        return frozenset(owner for owner, _ in self.units)

    def by_owner(self) -> list[Toy]:
        return [Toy(tuple(u for u in self.units if u[0] == owner)) for owner in sorted(self.owners)]


class Backend:
    """Refuses (400) any chunk holding a unit named "bad"; answers each chunk holding
    "busy" with 503, and "down" with a connection error."""

    def __init__(self) -> None:
        self.sent: list[Toy] = []

    def __call__(self, chunk: Toy) -> httpx.Response:
        self.sent.append(chunk)
        names = {name for _, name in chunk.units}
        if "down" in names:
            raise httpx.ConnectError("refused")
        if "busy" in names:
            return httpx.Response(503, headers={"retry-after": "4"}, text="busy")
        if "bad" in names:
            return httpx.Response(400, text="bad unit")
        return httpx.Response(204)


def deliver(
    chunks: list[Toy], backend: Callable[[Toy], httpx.Response], **hooks: object
) -> tuple[HandBack, dict[int, str]]:
    dead: dict[int, str] = {}
    hand_back = deliver_chunks(
        chunks, backend, classify=classify_http, dead=dead, backend="Toy", log=LOG, **hooks
    )  # type: ignore[arg-type]
    return hand_back, dead


def test_a_refusal_of_the_data_is_narrowed_down_to_its_records() -> None:
    backend = Backend()
    hand_back, dead = deliver(
        [Toy(((0, "ok"), (1, "bad"), (2, "ok")))],
        backend,
        data_at_fault=lambda status: status == 400,
    )
    assert hand_back == HandBack()
    assert dead == {1: "HTTP 400: bad unit"}
    assert len(backend.sent) == 4


def test_without_narrowing_the_whole_chunk_is_dead() -> None:
    _, dead = deliver([Toy(((0, "ok"), (1, "bad")))], Backend())
    assert set(dead) == {0, 1}


def test_retry_and_outage_hand_back_the_rest_with_the_reason() -> None:
    chunks = [Toy(((0, "ok"),)), Toy(((1, "busy"),)), Toy(((2, "ok"),))]
    hand_back, dead = deliver(chunks, Backend())
    assert (hand_back.retry, hand_back.delay, hand_back.reason) == (
        frozenset({1, 2}),
        4.0,
        "HTTP 503: busy",
    )
    assert dead == {}
    down, _ = deliver([Toy(((0, "down"),)), Toy(((1, "ok"),))], Backend())
    assert down.retry == {0, 1} and down.reason.startswith("Toy unreachable: ConnectError")


def blame(status: int, body: str, chunk: Toy) -> Mapping[int, Outcome] | None:
    """Like OpenTSDB's details: unit "bad" is refused for good, "slow" for now."""
    verdicts = {}
    for owner, name in chunk.units:
        if name == "bad":
            verdicts[owner] = Outcome("permanent", f"{name} refused")
        elif name == "slow":
            verdicts[owner] = Outcome("retry", f"{name} not stored")
    return verdicts or None


def test_blame_pins_verdicts_on_records_and_keeps_going() -> None:
    backend = Backend()
    chunks = [Toy(((0, "bad"), (1, "slow"), (2, "ok"))), Toy(((3, "ok"),))]
    hand_back, dead = deliver(chunks, backend, blame=blame)
    assert dead == {0: "bad refused"}
    assert (hand_back.retry, hand_back.delay, hand_back.reason) == (
        frozenset({1}),
        None,
        "slow not stored",
    )
    assert len(backend.sent) == 2


def test_records_blamed_for_now_go_back_with_a_later_outage() -> None:
    chunks = [Toy(((0, "slow"), (1, "bad"))), Toy(((2, "busy"),))]
    hand_back, dead = deliver(
        chunks, Backend(), blame=lambda s, b, c: blame(s, b, c) if s == 400 else None
    )
    assert set(dead) == {1}
    assert hand_back.retry == {0, 2} and hand_back.reason == "HTTP 503: busy"


def test_delivered_carries_the_reason_only_with_records_to_retry() -> None:
    batch = [Record("t", 0, i, None, b"") for i in range(3)]
    result = delivered(batch, {2: "bad"}, HandBack(frozenset({0}), 1.5, "busy"))
    assert ([r.offset for r in result.retry], result.retry_delay, result.retry_reason) == (
        [0],
        1.5,
        "busy",
    )
    assert [(r.offset, why) for r, why in result.dead] == [(2, "bad")]
    nothing = delivered(batch, {}, HandBack(frozenset(), 1.5, "busy"))
    assert (nothing.retry_delay, nothing.retry_reason) == (None, "")


# ---- evidence: what a refusal pins on the records of its request ---------------------------


@pytest.mark.parametrize(
    ("status", "records", "item_status", "expected"),
    [
        (500, 1, None, True),
        (501, 1, None, True),
        (505, 1, None, True),
        (507, 1, None, True),
        (502, 1, None, False),
        (503, 1, None, False),
        (504, 1, None, False),
        (429, 1, None, False),
        (408, 1, None, False),
        (200, 1, None, False),
        (400, 1, None, False),  # a request-level 4xx refused "for now" pins nothing
        (500, 2, None, False),  # a request of several records pins nothing on one of them
        (200, 5, 500, True),
        (200, 5, 400, True),
        (400, 1, 500, True),
        (200, 5, 429, False),
        (200, 5, 503, False),
        (200, 5, 502, False),
        (200, 5, 504, False),
        (200, 5, 408, False),
        (500, 1, 429, False),  # the item's status decides
    ],
)
def test_evidence_status_table(
    status: int, records: int, item_status: int | None, expected: bool
) -> None:
    assert evidence(status, records=records, item_status=item_status) is expected


class Statuses:
    """Answers each chunk with the status its first unit names ("500", "503", "ok")."""

    def __init__(self) -> None:
        self.sent: list[Toy] = []

    def __call__(self, chunk: Toy) -> httpx.Response:
        self.sent.append(chunk)
        names = {name for _, name in chunk.units}
        for status in ("500", "503", "429", "502"):
            if status in names:
                return httpx.Response(int(status), text=f"said {status}")
        if "down" in names:
            raise httpx.ConnectError("refused")
        return httpx.Response(204)


def test_a_500_to_a_request_of_one_record_is_pinned_on_it_and_the_rest_is_sent() -> None:
    backend = Statuses()
    hand_back, dead = deliver([Toy(((0, "ok"),)), Toy(((1, "500"),)), Toy(((2, "ok"),))], backend)
    assert dead == {}
    assert hand_back.retry == {1} and dict(hand_back.refused) == {1: "HTTP 500: said 500"}
    assert len(backend.sent) == 3


@pytest.mark.parametrize("answer", ["503", "429", "502", "down"])
def test_backpressure_pins_nothing_and_the_rest_goes_back_unsent(answer: str) -> None:
    backend = Statuses()
    chunks = [Toy(((0, "500"),)), Toy(((1, "ok"),)), Toy(((2, answer),)), Toy(((3, "ok"),))]
    hand_back, dead = deliver(chunks, backend)
    assert dead == {}
    assert hand_back.retry == {0, 2, 3}
    # Only the record sent and refused about itself; not the refused-as-backpressure
    # one, not the one never sent.
    assert set(hand_back.refused) == {0}
    assert len(backend.sent) == 3


def test_a_500_to_a_request_of_several_records_is_narrowed_down() -> None:
    backend = Statuses()
    hand_back, dead = deliver([Toy(((0, "ok"), (1, "500"), (2, "ok")))], backend)
    assert dead == {}
    assert hand_back.retry == {1} and set(hand_back.refused) == {1}
    assert len(backend.sent) == 4  # the chunk, then each record alone


def test_blame_pins_only_per_item_refusals_that_are_not_backpressure() -> None:
    def per_item(status: int, body: str, chunk: Toy) -> Mapping[int, Outcome]:
        return {
            owner: Outcome("retry", name, status=int(name))
            for owner, name in chunk.units
            if name in ("500", "429")
        }

    chunks = [Toy(((0, "500"), (1, "429"), (2, "ok")))]
    hand_back, _ = deliver(chunks, Statuses(), blame=per_item)
    assert hand_back.retry == {0, 1}
    assert dict(hand_back.refused) == {0: "500"}


def test_delivered_reports_the_refused_records_with_their_reasons() -> None:
    batch = [Record("t", 0, i, None, b"") for i in range(3)]
    result = delivered(
        batch, {}, HandBack(frozenset({0, 1}), None, "HTTP 503", {1: "HTTP 500: bad"})
    )
    assert [r.offset for r in result.retry] == [0, 1]
    assert [(r.offset, why) for r, why in result.refused] == [(1, "HTTP 500: bad")]
