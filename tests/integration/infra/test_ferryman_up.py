"""``ferryman up``: the local pipeline on the real stack carries this machine's metrics
and its /var/log into the backends."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from infra import local
from infra.local.pipeline import PIPELINE
from infra.local.procs import alive
from tests.integration.pipeline import wait_for


def _running() -> set[str]:
    state = local.load_state(local.default_layout())
    return {
        name
        for name, entry in state["services"].items()
        if entry.get("pid") and alive(entry["pid"], entry.get("ticks"))
    }


def test_up_ships_metrics_and_var_log_into_every_backend(stack, unique):
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
    finally:
        log.unlink(missing_ok=True)
        started = [s.name for s in PIPELINE if s.name not in before]
        if started:
            local.down(started, say=lambda line: None)
