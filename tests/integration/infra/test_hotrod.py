"""HotROD (the Jaeger project's demo application, OpenTelemetry Go SDK) exports its
traces over OTLP/HTTP into the stack's Jaeger, and they can be read back."""

from __future__ import annotations

import json
import subprocess
import time

import httpx

from infra.local import default_layout
from infra.local.catalogue import by_name
from tests.integration.hotrod import SERVICES, HotROD, complete_traces, process_tags


def test_stack_install_builds_hotrod():
    layout = default_layout()
    # Idempotent: the stamp names the Jaeger module version HotROD was built from.
    assert by_name("hotrod").install(layout) == "v1.75.0"
    binary = layout.bin / "hotrod"
    assert (layout.bin / "hotrod.version").read_text().startswith("hotrod v1.75.0 ")
    help_text = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "HotR.O.D." in help_text


def test_hotrod_traces_arrive_in_jaeger(stack, unique, tmp_path):
    query = stack("jaeger", "query")
    with HotROD(
        stack("jaeger", "otlp_http"), tmp_path, resource_attributes={"ferryman.test.run": unique}
    ) as hotrod:
        sent = hotrod.drive(3, interval=0.2)
        assert [d.status for d in sent] == [200, 200, 200], hotrod.output()

        traces = complete_traces(query, sent)

    for trace in traces:
        # One request fans out to ten route calculations and a dozen Redis reads.
        assert len(trace["spans"]) >= 20
        tags = process_tags(trace)
        assert {tags[s]["ferryman.test.run"] for s in SERVICES} == {unique}
        assert tags["frontend"]["telemetry.sdk.language"] == "go"
        roots = [s for s in trace["spans"] if s["operationName"] == "/dispatch"]
        assert len(roots) == 1

    services = httpx.get(f"{query}/api/services", timeout=10).json()["data"]
    assert set(SERVICES) <= set(services)
    found = httpx.get(
        f"{query}/api/traces",
        params={
            "service": "frontend",
            "tags": json.dumps({"ferryman.test.run": unique}),
            "limit": "20",
        },
        timeout=10,
    ).json()["data"]
    by_root = {t["traceID"]: sorted(s["operationName"] for s in t["spans"]) for t in found}
    ours = {d.trace_id for d in sent}
    assert ours <= set(by_root)
    # Besides, only the helper's readiness probe (GET /config) was traced.
    assert [by_root[t] for t in set(by_root) - ours] == [["/config"]]


def test_trickle_then_stop_keeps_the_last_spans(stack, unique, tmp_path):
    """A background trickle of rides; stop() outlasts the SDK's batch timeout, so even
    the last ride's spans reach Jaeger although HotROD does not flush on SIGTERM."""
    hotrod = HotROD(
        stack("jaeger", "otlp_http"), tmp_path, resource_attributes={"ferryman.test.run": unique}
    ).start()
    try:
        with hotrod.trickle(interval=0.3) as sent:
            deadline = time.monotonic() + 30
            while len(sent) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        hotrod.stop()
    assert not hotrod.alive()
    assert len(sent) >= 4, hotrod.output()
    assert sent == hotrod.dispatched
    traces = complete_traces(stack("jaeger", "query"), sent)
    assert sorted(t["traceID"] for t in traces) == sorted(d.trace_id for d in sent)
