"""The one chunk-delivery loop: narrowing, blame, hand-back and its reason."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from functions._chunks import HandBack, deliver_chunks, delivered
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
        return [Toy(tuple(u for u in self.units if u[0] == owner))
                for owner in sorted(self.owners)]


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


def deliver(chunks: list[Toy], backend: Backend, **hooks: object) -> tuple[HandBack,
                                                                           dict[int, str]]:
    dead: dict[int, str] = {}
    hand_back = deliver_chunks(chunks, backend, classify=classify_http, dead=dead,
                               backend="Toy", log=LOG, **hooks)  # type: ignore[arg-type]
    return hand_back, dead


def test_a_refusal_of_the_data_is_narrowed_down_to_its_records() -> None:
    backend = Backend()
    hand_back, dead = deliver([Toy(((0, "ok"), (1, "bad"), (2, "ok")))], backend,
                              data_at_fault=lambda status: status == 400)
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
        frozenset({1, 2}), 4.0, "HTTP 503: busy")
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
        frozenset({1}), None, "slow not stored")
    assert len(backend.sent) == 2


def test_records_blamed_for_now_go_back_with_a_later_outage() -> None:
    chunks = [Toy(((0, "slow"), (1, "bad"))), Toy(((2, "busy"),))]
    hand_back, dead = deliver(chunks, Backend(), blame=lambda s, b, c: blame(s, b, c)
                              if s == 400 else None)
    assert set(dead) == {1}
    assert hand_back.retry == {0, 2} and hand_back.reason == "HTTP 503: busy"


def test_delivered_carries_the_reason_only_with_records_to_retry() -> None:
    batch = [Record("t", 0, i, None, b"") for i in range(3)]
    result = delivered(batch, {2: "bad"}, HandBack(frozenset({0}), 1.5, "busy"))
    assert ([r.offset for r in result.retry], result.retry_delay, result.retry_reason) == (
        [0], 1.5, "busy")
    assert [(r.offset, why) for r, why in result.dead] == [(2, "bad")]
    nothing = delivered(batch, {}, HandBack(frozenset(), 1.5, "busy"))
    assert (nothing.retry_delay, nothing.retry_reason) == (None, "")
