"""A tenant's write_relabel_configs: validated at load, applied to the series it sends."""

from __future__ import annotations

import pytest

from edge.gateway import protocols as p
from edge.gateway.config import Tenant, load_config
from ferryman.errors import ConfigError
from ferryman.wire.protobuf import bytes_field, double_field, varint, varint_field
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)
from ferryman.wire.remote_write2 import decode_request

TOKEN = "sha256:" + "0" * 64
RULES = [
    {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},
    {
        "source_labels": ["env"],
        "regex": "(prod|stage)-(.*)",
        "target_label": "cluster",
        "replacement": "$2",
    },
    {"regex": "secret|env", "action": "labeldrop"},
]


def _tenant(rules=RULES) -> Tenant:
    return Tenant.model_validate(
        {
            "name": "t",
            "bearer_token_hash": TOKEN,
            "clusters": ["c1"],
            "write_relabel_configs": rules,
        }
    )


def test_a_bad_rule_is_refused_at_load_naming_the_tenant_and_the_rule(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"tenants:\n  - name: team-q\n    bearer_token_hash: '{TOKEN}'\n    clusters: [x]\n"
        "    write_relabel_configs:\n"
        "      - {source_labels: [a], regex: 'x', action: drop}\n"
        "      - {source_labels: [a], regex: 'a)|(b', action: keep}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"tenant team-q: write_relabel_configs\[1\]: regex: "
        r"invalid regex 'a\)\|\(b'",
    ):
        load_config(path)
    path.write_text(
        f"tenants:\n  - name: team-q\n    bearer_token_hash: '{TOKEN}'\n    clusters: [x]\n"
        "    write_relabel_configs: [{action: replace, regex: a}]\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"tenant team-q: write_relabel_configs\[0\]: .*"
        "requires 'target_label'",
    ):
        load_config(path)


def test_rules_are_compiled_with_re2_once_and_a_tenant_without_rules_has_none():
    tenant = _tenant([{"source_labels": ["a"], "regex": "\\pL+", "action": "keep"}])
    assert tenant.relabeler is not None and tenant.relabeler.engine == "re2"
    assert _tenant([]).relabeler is None


def test_a_1_0_body_is_relabelled_checked_and_dropped_series_counted():
    series = [
        TimeSeries((("__name__", "go_gc"), ("cluster", "c1")), (Sample(1, 1),)),
        TimeSeries((("__name__", "up"), ("env", "prod-c1"), ("secret", "s")), (Sample(2, 2),)),
        TimeSeries((("__name__", "up"), ("cluster", "c1")), (Sample(3, 3), Sample(4, 4))),
    ]
    body = snappy_compress(encode_write_request(series))
    batch, kept = p.relabelled_write_messages(body, _tenant(), _tenant().relabeler, 2**20)
    assert kept.dropped == 1 and batch.items == 3
    (message,) = batch.messages
    assert decode_write_request(snappy_decompress(message[1])) == [
        TimeSeries((("__name__", "up"), ("cluster", "c1")), (Sample(2, 2),)),
        series[2],
    ]


def test_a_foreign_cluster_made_by_the_rules_is_still_refused():
    rules = [{"target_label": "cluster", "replacement": "elsewhere"}]
    body = snappy_compress(
        encode_write_request([TimeSeries((("__name__", "up"), ("cluster", "c1")), ())])
    )
    tenant = _tenant(rules)
    with pytest.raises(p.Refusal) as caught:
        p.relabelled_write_messages(body, tenant, tenant.relabeler, 2**20)
    assert caught.value.status == 403


def test_2_0_histograms_and_exemplars_are_kept_and_counted_only_for_kept_series():
    histogram = varint_field(1, 7) + double_field(3, 12.5)
    exemplar = bytes_field(1, varint(5) + varint(6)) + double_field(2, 0.5)
    symbols = ["", "__name__", "h", "cluster", "c1", "trace_id", "abc", "go_x", "secret"]
    kept_body = (
        bytes_field(1, varint(1) + varint(2) + varint(3) + varint(4) + varint(8) + varint(6))
        + bytes_field(3, histogram)
        + bytes_field(4, exemplar)
    )
    dropped_body = bytes_field(1, varint(1) + varint(7) + varint(3) + varint(4)) + bytes_field(
        3, histogram
    )
    raw = b"".join(bytes_field(4, s.encode()) for s in symbols)
    raw += bytes_field(5, kept_body) + bytes_field(5, dropped_body)
    request = decode_request(raw)
    kept = p.relabel_request2(request, _tenant().relabeler)
    assert (kept.dropped, kept.histograms, kept.exemplars) == (1, 1, 1)
    assert kept.series == [TimeSeries((("__name__", "h"), ("cluster", "c1")), ())]
    # the 1.0 form: the new labels, then the exemplar and the histogram as received
    assert kept.encoded == [
        bytes_field(
            1,
            bytes_field(1, bytes_field(1, b"__name__") + bytes_field(2, b"h"))
            + bytes_field(1, bytes_field(1, b"cluster") + bytes_field(2, b"c1"))
            + bytes_field(
                3,
                bytes_field(1, bytes_field(1, b"trace_id") + bytes_field(2, b"abc"))
                + double_field(2, 0.5),
            )
            + bytes_field(4, histogram),
        )
    ]


def test_unchanged_series_keep_their_bytes_and_invalid_names_are_dropped():
    rules = [{"regex": "__name__", "action": "labelmap"}]  # makes a label named ""
    one = TimeSeries((("__name__", "up"), ("cluster", "c1")), (Sample(1, 1),))
    raw = encode_write_request([one])
    kept = p.relabel_series([one], [memoryview(raw)[2:]], _tenant(rules).relabeler)
    assert kept.dropped == 1 and kept.series == []
    kept = p.relabel_series([one], [memoryview(raw)[2:]], _tenant([{"action": "keep"}]).relabeler)
    assert kept.encoded == [raw]
