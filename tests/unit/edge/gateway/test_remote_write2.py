from __future__ import annotations

import pytest

from ferryman.wire.protobuf import bytes_field, double_field, varint, varint_field
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    decode_write_request,
    encode_write_request,
)
from ferryman.wire.remote_write2 import DecodeError, decode_request, encode_request


def test_float_series_round_trip_into_remote_write_1():
    series = [
        TimeSeries((("__name__", "a"), ("job", "j")), (Sample(1.5, 10), Sample(-2.0, 20))),
        TimeSeries((("__name__", "b"),), (Sample(0.0, 0),)),
    ]
    request = decode_request(encode_request(series))
    assert request.series == series
    assert request.samples == 3
    assert decode_write_request(b"".join(request.encoded)) == series
    assert b"".join(request.encoded) == encode_write_request(series)


def _request(symbols, series_bodies):
    head = b"".join(bytes_field(4, s.encode()) for s in symbols)
    return head + b"".join(bytes_field(5, body) for body in series_bodies)


def test_histograms_and_exemplars_are_carried_into_the_1_0_series():
    histogram = varint_field(1, 7) + double_field(3, 12.5) + varint_field(15, 99)
    exemplar = bytes_field(1, varint(3) + varint(4)) + double_field(2, 0.5) + varint_field(3, 98)
    body = bytes_field(1, varint(1) + varint(2)) + bytes_field(3, histogram)
    body += bytes_field(4, exemplar)
    request = decode_request(_request(["", "__name__", "h", "trace_id", "abc"], [body]))
    assert request.histograms == 1 and request.exemplars == 1 and request.samples == 0
    want = (
        bytes_field(1, bytes_field(1, b"__name__") + bytes_field(2, b"h"))
        + bytes_field(
            3,
            bytes_field(1, bytes_field(1, b"trace_id") + bytes_field(2, b"abc"))
            + double_field(2, 0.5)
            + varint_field(3, 98),
        )
        + bytes_field(4, histogram)
    )
    assert request.encoded == [bytes_field(1, want)]


@pytest.mark.parametrize(
    "refs",
    [varint(1), varint(1) + varint(9)],
    ids=["odd", "past-the-table"],
)
def test_bad_label_references_are_refused(refs):
    with pytest.raises(DecodeError):
        decode_request(_request(["", "a"], [bytes_field(1, refs)]))


def _metadata(kind: int, help_ref: int, unit_ref: int) -> bytes:
    return bytes_field(
        5, varint_field(1, kind) + varint_field(3, help_ref) + varint_field(4, unit_ref)
    )


def test_metadata_becomes_1_0_metric_metadata_once_per_cluster_and_family():
    symbols = ["", "__name__", "m", "cluster", "a", "b", "Help.", "seconds", "x", "1"]
    labels = bytes_field(1, varint(1) + varint(2) + varint(3) + varint(4))
    other_cluster = bytes_field(1, varint(1) + varint(2) + varint(3) + varint(5))
    second = bytes_field(1, varint(1) + varint(2) + varint(3) + varint(4) + varint(8) + varint(9))
    bodies = [
        labels + _metadata(1, 6, 7),
        second + _metadata(1, 6, 7),  # same family and cluster: not repeated
        other_cluster + _metadata(1, 6, 7),  # another cluster's message needs its own
        other_cluster + bytes_field(5, b""),  # all defaults: none
    ]
    request = decode_request(_request(symbols, bodies))
    want = bytes_field(
        3,
        bytes_field(2, b"m") + varint_field(1, 1) + bytes_field(4, b"Help.")
        + bytes_field(5, b"seconds"),
    )  # fmt: skip
    assert request.metadata == [want, b"", want, b""]
    encoded = request.encoded
    assert request.with_metadata() == [encoded[0] + want, encoded[1], encoded[2] + want, encoded[3]]
    # The workers' decoder reads past the metadata.
    assert decode_write_request(b"".join(request.with_metadata())) == request.series


def test_a_metadata_reference_past_the_table_is_refused():
    body = bytes_field(1, varint(1) + varint(1)) + _metadata(1, 7, 0)
    with pytest.raises(DecodeError):
        decode_request(_request(["", "a"], [body]))
