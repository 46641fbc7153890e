"""``ferryman up``: the local pipeline on the real stack carries this machine's metrics
and its /var/log into the backends, OTLP traces (a test's own and HotROD's) into
Jaeger, and a Loki push to its gateway, as the demo tenant ``ferryman up`` prints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from ferryman.cli import gateway_hint
from infra import local
from infra.local.pipeline import GATEWAY_PORT, OTLP_HTTP_PORT, PIPELINE, gateway_token_file
from infra.local.procs import alive
from tests.integration.hotrod import jaeger_trace, process_tags
from tests.integration.pipeline import wait_for


def _spans_reach_jaeger_labelled_local(stack, unique: str) -> None:
    """The OpenTelemetry SDK's OTLP/HTTP exporter sends to the pipeline's receiver, and
    HotROD (run by the pipeline, driven by its trickle) does too: both arrive in Jaeger
    with ``k8s.cluster.name=local``."""
    query = stack("jaeger", "query")
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{OTLP_HTTP_PORT}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": f"up-{unique}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("checkout") as span:
        trace_id = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    trace = wait_for(lambda: jaeger_trace(query, trace_id), 60, "the SDK's span in Jaeger", 1)
    assert process_tags(trace)[f"up-{unique}"]["k8s.cluster.name"] == "local"

    def hotrod_local() -> bool:
        response = httpx.get(
            f"{query}/api/traces",
            params={"service": "frontend", "limit": "50", "lookback": "1h"},
            timeout=30,
        )
        return any(
            process_tags(t).get("frontend", {}).get("k8s.cluster.name") == "local"
            for t in response.json()["data"] or []
        )

    wait_for(hotrod_local, 90, "HotROD's traces in Jaeger labelled cluster local", 2)


def _gateway_carries_the_demo_tenant(stack, unique: str) -> None:
    """The token ``ferryman up`` prints writes through the gateway into VictoriaLogs as
    cluster ``demo``; another token gets 401."""
    token = gateway_token_file(local.default_layout()).read_text().strip()
    assert f"bearer token {token}" in gateway_hint()
    url = f"http://127.0.0.1:{GATEWAY_PORT}/loki/api/v1/push"
    push = {
        "streams": [
            {
                "stream": {"cluster": "demo", "job": f"gw-{unique}"},
                "values": [[str(time.time_ns()), f"{unique} through the gateway"]],
            }
        ]
    }
    wrong = httpx.post(url, json=push, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    answer = httpx.post(url, json=push, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 204, answer.text

    def arrived() -> list[dict[str, str]]:
        response = httpx.get(
            f"{stack('victorialogs', 'http')}/select/logsql/query",
            params={"query": f'job:="gw-{unique}"', "limit": "10"},
            timeout=30,
        )
        return [json.loads(r) for r in response.text.splitlines() if r.strip()]

    rows = wait_for(arrived, 90, "the gateway's line in VictoriaLogs", 1)
    assert [(r["_msg"], r["cluster"]) for r in rows] == [(f"{unique} through the gateway", "demo")]


def _running() -> set[str]:
    state = local.load_state(local.default_layout())
    return {
        name
        for name, entry in state["services"].items()
        if entry.get("pid") and alive(entry["pid"], entry.get("ticks"))
    }


def test_up_ships_metrics_logs_and_traces_into_every_backend(stack, unique):
    before = _running()
    local.up(pipeline=True, say=lambda line: None)
    log = Path("/var/log") / f"ferryman-test-{unique}.log"
    try:
        lines = [f"{unique} line {i} from the up test" for i in range(50)]
        log.write_text("".join(line + "\n" for line in lines))

        def logsql() -> set[str]:
            response = httpx.get(
                f"{stack('victorialogs', 'http')}/select/logsql/query",
                params={"query": f'filename:="{log}"', "limit": "1000"},
                timeout=30,
            )
            rows = [json.loads(r) for r in response.text.splitlines() if r.strip()]
            assert all(r["cluster"] == "local" and r["job"] == "varlog" for r in rows)
            return {r["_msg"] for r in rows}

        wait_for(lambda: logsql() == set(lines), 90, "the file's lines in VictoriaLogs", 1)

        def elasticsearch() -> list[str]:
            es = stack("elasticsearch", "http")
            httpx.post(f"{es}/logs-ferryman-local/_refresh", timeout=30)
            response = httpx.post(
                f"{es}/logs-ferryman-local/_search",
                timeout=30,
                json={"size": 100, "query": {"term": {"log.file.path": str(log)}}},
            )
            if response.status_code != 200:
                return []
            return [
                h["_source"]["message"]
                for h in response.json()["hits"]["hits"]
                if h["_source"]["cluster"] == "local"
            ]

        wait_for(
            lambda: sorted(elasticsearch()) == sorted(lines),
            90,
            "the file's lines in Elasticsearch, once each",
            1,
        )

        def prometheus_up() -> set[str]:
            response = httpx.get(
                f"{stack('prometheus', 'http')}/api/v1/query",
                params={"query": 'up{cluster="local"} == 1'},
                timeout=30,
            )
            return {r["metric"]["job"] for r in response.json()["data"]["result"]}

        assert wait_for(
            lambda: prometheus_up() >= {"node", "stack", "ferryman"},
            90,
            "node, stack and ferryman targets up in Prometheus",
            1,
        )
        _spans_reach_jaeger_labelled_local(stack, unique)
        _gateway_carries_the_demo_tenant(stack, unique)
    finally:
        log.unlink(missing_ok=True)
        started = [s.name for s in PIPELINE if s.name not in before]
        if started:
            local.down(started, say=lambda line: None)
