"""Remote write 1.0 pass-through: a body of the common shape is checked without being
decoded (label runs remembered once checked), with the same answers as decoding it."""

from __future__ import annotations

import pytest

from edge.gateway import protocols as p
from edge.gateway.auth import hash_token
from edge.gateway.config import Tenant
from ferryman import headers as h
from ferryman.wire.protobuf import bytes_field, double_field, varint_field
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)

NOW = 1_765_000_000_000
BIG = 1 << 20


def tenant(clusters: tuple[str, ...] = ("prod",), **limits: int) -> Tenant:
    return Tenant(
        name="team-a",
        bearer_token_hash=hash_token("t"),
        clusters=clusters,
        limits=limits,
    )


def series(n: int, cluster: str = "prod", *, values: tuple[float, ...] = (1.5,)) -> TimeSeries:
    labels = {"__name__": f"node_metric_{n % 9}", "cluster": cluster, "instance": f"h{n}:9100"}
    return TimeSeries(
        tuple(sorted(labels.items())),
        tuple(Sample(v, NOW + i) for i, v in enumerate(values)),
    )


def decoded_way(body: bytes, who: Tenant) -> p.Batch:
    raw = p.unsnappy(body, who.limits.max_decompressed_bytes)
    return p.series_messages(decode_write_request(raw), who, BIG, body)


def test_a_common_body_passes_as_received_with_what_decoding_finds() -> None:
    who = tenant(max_labels_per_series=39)  # limits of its own: a cache of its own
    # zero values: Prometheus's encoder leaves the value field out
    body = snappy_compress(
        encode_write_request(series(i, values=(float(i % 3),)) for i in range(50))
    )
    raw = p.unsnappy(body, BIG)
    assert p._pass_through(raw, who) == ("prod", 50)  # checked and remembered
    assert p._pass_through(raw, who) == ("prod", 50)  # from what it remembered
    batch, _ = p.remote_write_messages(body, who, BIG)
    assert batch.items == 50
    assert batch.messages == [
        (b"team-a/prod", body, p.headers_for(h.SCHEMA_REMOTE_WRITE, "prod", who))
    ]
    assert batch.messages == decoded_way(body, who).messages


def test_label_bytes_looking_like_a_sample_do_not_change_the_count() -> None:
    who = tenant(max_labels_per_series=38)
    # A label value's field is 0x12 + its length: these two are a well-formed sample
    # of each shape (zero value left out, and not), inside the label run.
    zero_shape = "\x10\u4e00\u0400a"  # 7 bytes: 0x10, 5 bytes above 0x7F, one below
    value_shape = "\x09abcdefgh\x10\u4e00\u0400a"  # 16 bytes
    assert len(zero_shape.encode()) == 7 and len(value_shape.encode()) == 16
    odd = TimeSeries(
        (("__name__", "m"), ("a", zero_shape), ("cluster", "prod")), (Sample(2.0, NOW),)
    )
    weird = TimeSeries(
        (("__name__", "m"), ("a", value_shape), ("cluster", "prod")), (Sample(0.0, NOW),)
    )
    body = snappy_compress(encode_write_request([odd, weird, series(1)] * 3))
    for _ in range(2):
        batch, _ = p.remote_write_messages(body, who, BIG)
        assert batch.items == 9
        assert batch.messages == decoded_way(body, who).messages


def test_shapes_it_does_not_take_go_the_decoding_way() -> None:
    who = tenant(("prod", "dev"), max_labels_per_series=37)
    two_samples = snappy_compress(encode_write_request([series(1, values=(1.0, 2.0))]))
    batch, _ = p.remote_write_messages(two_samples, who, BIG)
    assert batch.items == 2
    assert p._pass_through(p.unsnappy(two_samples, BIG), who) is None

    mixed = snappy_compress(encode_write_request([series(1), series(2, "dev")]))
    batch, _ = p.remote_write_messages(mixed, who, BIG)
    assert {m[0] for m in batch.messages} == {b"team-a/prod", b"team-a/dev"}

    # a field after the series (metadata): not passed through unseen
    with_metadata = encode_write_request([series(3)]) + bytes_field(3, b"\x08\x01")
    assert p._pass_through(with_metadata, who) is None


@pytest.mark.parametrize(
    ("labels", "status", "reason"),
    [
        ((("__name__", "m"), ("cluster", "prod"), ("a", "1"), ("b", "2")), 400, "label_count"),
        ((("__name__", "m"), ("cluster", "other")), 403, "cluster"),
        ((("__name__", "m"),), 400, "no_cluster"),
    ],
)
def test_refusals_are_the_decoding_ways_even_after_the_run_was_remembered(
    labels: tuple[tuple[str, str], ...], status: int, reason: str
) -> None:
    loose, strict = tenant(max_labels_per_series=20), tenant(max_labels_per_series=3)
    body = snappy_compress(
        encode_write_request([series(1), TimeSeries(labels, (Sample(1.0, NOW),))])
    )
    if reason == "label_count":  # remembered as passing for the loose limits only
        assert p.remote_write_messages(body, loose, BIG)[0].items == 2
    with pytest.raises(p.Refusal) as refused:
        p.remote_write_messages(body, strict, BIG)
    assert (refused.value.status, refused.value.reason) == (status, reason)


def test_a_broken_body_is_400() -> None:
    who = tenant(max_labels_per_series=36)
    raw = encode_write_request([series(1), series(2)])
    with pytest.raises(p.Refusal) as refused:
        p.remote_write_messages(snappy_compress(raw[:-3]), who, BIG)
    assert (refused.value.status, refused.value.reason) == (400, "decode")


def test_what_it_remembers_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "_CHECKED_MAX", 30)
    who = tenant(max_labels_per_series=35)
    for start in range(0, 200, 20):
        body = snappy_compress(encode_write_request(series(start + i) for i in range(20)))
        assert p.remote_write_messages(body, who, BIG)[0].items == 20
        remembered = sum(len(d) for by in p._CHECKED.values() for d in by.values())
        assert remembered <= 30


TWO_CLUSTERS = Tenant(name="team-a", clusters=("alpha", "beta"))


def _series_bytes(cluster: str, *extra: bytes) -> bytes:
    labels = b"".join(
        bytes_field(1, bytes_field(1, k.encode()) + bytes_field(2, v.encode()))
        for k, v in (("__name__", "m"), ("cluster", cluster))
    )
    sample = bytes_field(2, double_field(1, 1.5) + varint_field(2, 7))
    return bytes_field(1, labels + sample + b"".join(extra))


def test_a_1_0_request_cut_by_cluster_keeps_exemplars_and_histograms_as_received():
    exemplar = bytes_field(3, double_field(2, 0.5) + varint_field(3, 7))
    histogram = bytes_field(4, varint_field(1, 3) + double_field(3, 2.0) + varint_field(15, 7))
    alpha, beta = _series_bytes("alpha", exemplar, histogram), _series_bytes("beta", histogram)
    batch, _ = p.remote_write_messages(snappy_compress(alpha + beta), TWO_CLUSTERS, 1 << 20)
    assert batch.items == 2
    bodies = {dict(hdrs)[h.CLUSTER]: snappy_decompress(value) for _, value, hdrs in batch.messages}
    assert bodies == {b"alpha": alpha, b"beta": beta}


def test_a_1_0_request_of_one_cluster_goes_as_received():
    body = snappy_compress(_series_bytes("alpha") + _series_bytes("alpha"))
    batch, _ = p.remote_write_messages(body, TWO_CLUSTERS, 1 << 20)
    assert [value for _, value, _ in batch.messages] == [body]
