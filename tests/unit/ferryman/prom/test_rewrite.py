from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.prom.relabel import RelabelConfig, compile_rules
from ferryman.prom.rewrite import Rewriter
from ferryman.wire.protobuf import DecodeError
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    decode_write_request,
    encode_write_request,
)

RULES = compile_rules(
    [
        RelabelConfig(source_labels=("job",), regex="drop.*", action="drop"),
        RelabelConfig(target_label="tenant", replacement="t-$1", source_labels=("team",)),
        RelabelConfig(action="labeldrop", regex="tmp_.*"),
    ]
)

names = st.sampled_from(["job", "team", "tmp_x", "pod", "zone"])
label_sets = st.dictionaries(names, st.sampled_from(["a", "b", "drop-me", "", "x y"]), max_size=5)
series = st.builds(
    lambda labels, name, value: TimeSeries(
        tuple(sorted({**labels, "__name__": name}.items())), (Sample(value, 1_700_000),)
    ),
    label_sets,
    st.sampled_from(["m1", "m2"]),
    st.floats(allow_nan=False),
)


def naive(batch: list[TimeSeries]) -> list[TimeSeries]:
    out = []
    for item in batch:
        result = RULES.apply(dict(item.labels))
        if result is not None:
            out.append(TimeSeries(tuple(sorted(result.items())), item.samples))
    return out


@settings(max_examples=200)
@given(st.lists(series, max_size=12))
def test_fast_rewrite_equals_decode_relabel_encode(batch: list[TimeSeries]) -> None:
    rewriter = Rewriter(RULES, cache_size=4)
    for _ in range(2):  # the second pass is served from the cache
        result = rewriter.rewrite(encode_write_request(batch))
        expected = naive(batch)
        assert decode_write_request(result.payload) == expected
        assert (result.series_in, result.series_out) == (len(batch), len(expected))


def test_all_dropped_gives_empty_payload() -> None:
    batch = [TimeSeries((("__name__", "m"), ("job", "drop-it")), (Sample(1.0, 1),))]
    assert Rewriter(RULES).rewrite(encode_write_request(batch)).payload == b""


@pytest.mark.parametrize(
    "garbage", [b"\x0a\xff\xff", b"\x0a\x05\x0a", b"\x08\x01", b"\x0a\x03\x0a\x09\x00"]
)
def test_garbage_raises_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        Rewriter(RULES).rewrite(garbage)
