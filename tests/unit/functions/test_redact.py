"""The ``redact`` transform: default and own rules over lines and metadata."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.loki import Entry, Stream, decode_push_request, encode_push_request
from ferryman.wire.remote_write import snappy_compress, snappy_decompress
from functions.redact import SPEC
from functions.redact.config import RedactConfig
from functions.redact.core import Redactor
from workers.function import Context
from workers.records import Record

TS = 1_700_000_000_000_000_000


def redactor(**values: Any) -> Redactor:
    return Redactor(RedactConfig.model_validate(values))


def mask(text: str, **values: Any) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()
    return redactor(**values).text(text, counts), counts


@pytest.mark.parametrize(
    ("line", "masked", "rule"),
    [
        (
            "Authorization: Bearer eyJhbGciOi.J9.x-y_z==",
            "Authorization: Bearer ***",
            "bearer_token",
        ),
        ("auth header bearer abc123 sent", "auth header bearer *** sent", "bearer_token"),
        (
            "GET /cb?code=1&access_token=s3cr3t&x=2",
            "GET /cb?code=1&access_token=***&x=2",
            "query_token",
        ),
        ("GET /api?api_key=AKIA123 HTTP/1.1", "GET /api?api_key=*** HTTP/1.1", "query_token"),
        ("login user=bob password=hunter2 ok", "login user=bob password=*** ok", "query_token"),
        ('level=warn token="a b" n=1', "level=warn token=*** n=1", "query_token"),
        (
            "dial postgres://app:pa55w0rd@db:5432/x",
            "dial postgres://app:***@db:5432/x",
            "url_password",
        ),
        (
            "fetch https://user:p%40ss@example.com/path",
            "fetch https://user:***@example.com/path",
            "url_password",
        ),
        ("mail from jane.doe+tag@mail.example.co.uk failed", "mail from ***@*** failed", "email"),
        (
            "max_tokens=100 tokens_used=5 https://example.com/a@b",
            "max_tokens=100 tokens_used=5 https://example.com/a@b",
            None,
        ),
    ],
)
def test_default_rules(line: str, masked: str, rule: str | None) -> None:
    text, counts = mask(line)
    assert text == masked
    assert counts == (Counter({rule: 1}) if rule else Counter())


def test_defaults_switch_off_one_by_one() -> None:
    line = "bearer abc to bob@example.com via https://u:p@h/"
    assert (
        mask(line, defaults={"email": False})[0]
        == "bearer *** to bob@example.com via https://u:***@h/"
    )
    assert (
        mask(line, defaults={"bearer_token": False, "url_password": False})[0]
        == "bearer abc to ***@*** via https://u:p@h/"
    )


def test_own_rules_run_after_the_defaults_with_group_references() -> None:
    text, counts = mask(
        "card 4111 1111 1111 1234 from a@b.io",
        rules=[
            {"name": "card", "regex": r"\b(?:\d{4}[ -]?){3}(\d{4})\b", "replacement": r"****-\g<1>"}
        ],
    )
    assert text == "card ****-1234 from ***@***"
    assert counts == Counter({"card": 1, "email": 1})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rules": [{"name": "x", "regex": "(a"}]}, "rule x"),
        ({"rules": [{"name": "x", "regex": "a", "replacement": r"\g<1>"}]}, "rule x"),
        ({"rules": [{"name": "x", "regex": "a"}, {"name": "x", "regex": "b"}]}, "unique"),
        ({"rules": [{"name": "email", "regex": "a"}]}, "unique"),
        ({"defaults": {"ssn": True}}, "Extra inputs"),
    ],
)
def test_bad_config_is_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RedactConfig.model_validate(values)


def test_metadata_values_are_masked_unless_switched_off() -> None:
    stream = Stream(
        {"app": "a"},
        [Entry(TS, "user bob@example.com", (("email", "bob@example.com"), ("n", "1")))],
    )
    counts: Counter[str] = Counter()
    [out] = redactor().streams([stream], counts)
    assert list(out.entries) == [Entry(TS, "user ***@***", (("email", "***@***"), ("n", "1")))]
    assert counts == Counter({"email": 2})
    [out] = redactor(metadata=False).streams([stream], Counter())
    assert out.entries[0].metadata == stream.entries[0].metadata


def test_handle_counts_by_rule_keeps_key_and_headers_and_dead_letters_garbage() -> None:
    registry = Registry()
    handler = SPEC.create(
        RedactConfig(), Context("redact", httpx.Client, registry, logging.getLogger("test"))
    )
    headers = ((h.SCHEMA, h.SCHEMA_LOKI_PUSH), (h.CLUSTER, b"alpha"))
    body = encode_push_request(
        [
            Stream(
                {"app": "a"},
                [
                    Entry(TS, "Authorization: Bearer abc"),
                    Entry(TS + 1, "to x@y.org and z@y.org"),
                    Entry(TS + 2, "nothing here"),
                ],
            )
        ]
    )
    good = Record("logs", 0, 0, b"k", snappy_compress(body), headers)
    result = handler.handle([good, Record("logs", 0, 1, b"k", b"garbage", headers)])
    assert [
        (r.offset, reason.startswith("not a Loki push message")) for r, reason in result.dead
    ] == [(1, True)]
    [output] = result.outputs
    assert (output.key, output.headers) == (b"k", headers)
    [stream] = decode_push_request(snappy_decompress(output.value))
    assert [e.line for e in stream.entries] == [
        "Authorization: Bearer ***",
        "to ***@*** and ***@***",
        "nothing here",
    ]
    text = registry.render()
    assert 'ferryman_redactions_total{function="redact",rule="bearer_token"} 1' in text
    assert 'ferryman_redactions_total{function="redact",rule="email"} 2' in text
