from __future__ import annotations

from edge.gateway import protocols as p
from edge.gateway.config import Tenant
from ferryman import headers as h
from ferryman.wire.protobuf import bytes_field, double_field, varint_field
from ferryman.wire.remote_write import snappy_compress, snappy_decompress

TENANT = Tenant(name="team-a", clusters=("alpha", "beta"))


def _series(cluster: str, *extra: bytes) -> bytes:
    labels = b"".join(
        bytes_field(1, bytes_field(1, k.encode()) + bytes_field(2, v.encode()))
        for k, v in (("__name__", "m"), ("cluster", cluster))
    )
    sample = bytes_field(2, double_field(1, 1.5) + varint_field(2, 7))
    return bytes_field(1, labels + sample + b"".join(extra))


def test_a_1_0_request_cut_by_cluster_keeps_exemplars_and_histograms_as_received():
    exemplar = bytes_field(3, double_field(2, 0.5) + varint_field(3, 7))
    histogram = bytes_field(4, varint_field(1, 3) + double_field(3, 2.0) + varint_field(15, 7))
    alpha, beta = _series("alpha", exemplar, histogram), _series("beta", histogram)
    batch, _ = p.remote_write_messages(snappy_compress(alpha + beta), TENANT, 1 << 20)
    assert batch.items == 2
    bodies = {dict(hdrs)[h.CLUSTER]: snappy_decompress(value) for _, value, hdrs in batch.messages}
    assert bodies == {b"alpha": alpha, b"beta": beta}


def test_a_1_0_request_of_one_cluster_goes_as_received():
    body = snappy_compress(_series("alpha") + _series("alpha"))
    batch, _ = p.remote_write_messages(body, TENANT, 1 << 20)
    assert [value for _, value, _ in batch.messages] == [body]
