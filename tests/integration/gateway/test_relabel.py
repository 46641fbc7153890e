"""A tenant's write_relabel_configs in a running gateway: exactly the relabelled
series reach Kafka, the tenant's clusters still hold, and a pathological regex does
not stall a request."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edge.gateway.auth import hash_token
from ferryman import headers as h
from ferryman.wire.remote_write import (
    HEADERS,
    TimeSeries,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)
from ferryman.wire.remote_write2 import encode_request
from tests.integration.gateway.helpers import messages
from tests.integration.pipeline import Gateway, create_topics, free_port, time_series, wait_for

TOKEN_R = "token-of-the-relabelled-team-0123"
TOKEN_F = "token-of-a-team-that-forges-0123"
V2_HEADERS = {
    "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "2.0.0",
}
A40 = "a" * 40  # (a*)*c against 40 a's: beyond a backtracking engine's reach

RULES: list[dict[str, Any]] = [
    {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},
    # the operator fixes the cluster from an env label some agents set
    {
        "source_labels": ["env"],
        "regex": "(prod|stage)-(.*)",
        "target_label": "cluster",
        "replacement": "$2",
    },
    {"regex": "secret|env", "action": "labeldrop"},
    {"source_labels": ["path"], "regex": "(a*)*c", "action": "drop"},
]


@pytest.fixture
def relabelled(stack, tmp_path, processes, unique) -> tuple[Gateway, str, str]:
    bootstrap = stack("kafka", "bootstrap")
    topics = {"metrics": f"{unique}-m", "logs": f"{unique}-l", "traces": f"{unique}-t"}
    create_topics(bootstrap, *((t, 2) for t in topics.values()))
    tenants = [
        {
            "name": "team-r",
            "bearer_token_hash": hash_token(TOKEN_R),
            "clusters": ["rel-a"],
            "write_relabel_configs": RULES,
        },
        {
            "name": "team-f",
            "bearer_token_hash": hash_token(TOKEN_F),
            "clusters": ["rel-a"],
            "write_relabel_configs": [{"target_label": "cluster", "replacement": "rel-b"}],
        },
    ]
    tenants_file = tmp_path / f"tenants-{unique}.yaml"
    tenants_file.write_text(yaml.safe_dump({"tenants": tenants}))
    config = {
        "listen": f"127.0.0.1:{free_port()}",
        "kafka": {"bootstrap_servers": bootstrap, "topics": topics},
        "ack_timeout": "5s",
        "tenants_file": str(tenants_file),
    }
    gateway = processes(Gateway(tmp_path, config))
    gateway.wait_ready()
    return gateway, bootstrap, topics["metrics"]


def _sent(now: int, value: float) -> list[TimeSeries]:
    return [
        time_series({"__name__": "go_goroutines", "cluster": "rel-a"}, (value, now)),
        time_series(
            {"__name__": "up", "env": "prod-rel-a", "secret": "s3", "job": "j"}, (value, now)
        ),
        time_series({"__name__": "http_total", "cluster": "rel-a", "path": A40}, (value, now)),
        time_series(
            {"__name__": "http_total", "cluster": "rel-a", "path": A40 + "c"}, (value, now)
        ),
    ]


def _expected(now: int, value: float) -> list[TimeSeries]:
    return [
        time_series({"__name__": "up", "cluster": "rel-a", "job": "j"}, (value, now)),
        time_series({"__name__": "http_total", "cluster": "rel-a", "path": A40}, (value, now)),
    ]


def _written(found: list[Any]) -> list[TimeSeries]:
    out = []
    for message in found:
        assert dict(message.headers) == {
            h.SCHEMA: h.SCHEMA_REMOTE_WRITE,
            h.CLUSTER: b"rel-a",
            h.TENANT: b"team-r",
        }
        out += decode_write_request(snappy_decompress(message.value))
    return sorted(out, key=lambda s: s.labels)


def test_exactly_the_relabelled_series_reach_kafka_from_1_0_and_2_0(relabelled):
    gateway, bootstrap, topic = relabelled
    url = f"{gateway.url}/api/v1/write"
    auth = {"Authorization": f"Bearer {TOKEN_R}"}
    now = int(time.time() * 1000)

    # 40 a's through (a*)*c, twice: a backtracking engine would still be at it
    body = snappy_compress(encode_write_request(_sent(now, 1.0)))
    answer = httpx.post(url, content=body, headers={**HEADERS, **auth}, timeout=30)
    assert answer.status_code == 204, answer.text
    first = messages(bootstrap, topic)
    assert _written(first) == sorted(_expected(now, 1.0), key=lambda s: s.labels)

    body = snappy_compress(encode_request(_sent(now + 1, 2.0)))
    answer = httpx.post(url, content=body, headers={**V2_HEADERS, **auth}, timeout=30)
    assert answer.status_code == 204, answer.text
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "2"  # of 4 sent
    assert answer.headers["X-Prometheus-Remote-Write-Histograms-Written"] == "0"
    second = messages(bootstrap, topic)[len(first) :]
    assert _written(second) == sorted(_expected(now + 1, 2.0), key=lambda s: s.labels)

    assert gateway.metric("ferryman_gateway_relabel_dropped_total", tenant="team-r") == 4
    assert (
        gateway.metric("ferryman_gateway_accepted_total", endpoint="remote_write", tenant="team-r")
        == 4
    )


def test_rules_that_claim_a_foreign_cluster_get_403_and_nothing_is_produced(relabelled):
    gateway, bootstrap, topic = relabelled
    body = snappy_compress(
        encode_write_request(
            [time_series({"__name__": "up", "cluster": "rel-a"}, (1.0, int(time.time() * 1000)))]
        )
    )
    headers = {**HEADERS, "Authorization": f"Bearer {TOKEN_F}"}
    answer = httpx.post(f"{gateway.url}/api/v1/write", content=body, headers=headers, timeout=30)
    assert answer.status_code == 403, answer.text
    assert "rel-b" in answer.text
    assert messages(bootstrap, topic, timeout_ms=2000) == []
    assert gateway.metric("ferryman_gateway_refused_total", reason="cluster") == 1


def test_sighup_applies_new_rules_and_keeps_the_old_ones_for_a_bad_regex(relabelled):
    gateway, bootstrap, topic = relabelled
    url = f"{gateway.url}/api/v1/write"
    headers = {**HEADERS, "Authorization": f"Bearer {TOKEN_R}"}
    now = int(time.time() * 1000)
    body = snappy_compress(
        encode_write_request([time_series({"__name__": "up", "cluster": "rel-a"}, (1.0, now))])
    )
    tenants_file = Path(gateway.settings["tenants_file"])
    document = yaml.safe_load(tenants_file.read_text())
    document["tenants"][0]["write_relabel_configs"] = [
        {"target_label": "reloaded", "replacement": "yes"}
    ]
    tenants_file.write_text(yaml.safe_dump(document))
    gateway.signal(signal.SIGHUP)
    wait_for(
        lambda: gateway.metric("ferryman_gateway_reloads_total", result="success") == 1,
        30,
        "the reload counted",
    )
    assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 204
    (found,) = messages(bootstrap, topic)
    (written,) = decode_write_request(snappy_decompress(found.value))
    assert dict(written.labels) == {"__name__": "up", "cluster": "rel-a", "reloaded": "yes"}

    document["tenants"][0]["write_relabel_configs"] = [{"regex": "(a", "action": "labeldrop"}]
    tenants_file.write_text(yaml.safe_dump(document))
    gateway.signal(signal.SIGHUP)
    wait_for(
        lambda: gateway.metric("ferryman_gateway_reloads_total", result="failure") == 1,
        30,
        "the failed reload counted",
    )
    assert "tenant team-r: write_relabel_configs[0]: regex: invalid regex" in gateway.output()
    assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 204
    assert len(messages(bootstrap, topic)) == 2
