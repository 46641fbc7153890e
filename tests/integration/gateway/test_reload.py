"""SIGHUP reads the tenants again: a rotated token applies, a broken file is kept out."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import yaml

from edge.gateway.auth import hash_token
from ferryman.wire.remote_write import HEADERS, encode_write_request, snappy_compress
from tests.integration.gateway.helpers import TOKEN_A, start_gateway, tenants
from tests.integration.pipeline import time_series, wait_for


def test_sighup_rotates_a_token_and_keeps_a_broken_file_out(stack, tmp_path, processes, unique):
    setup = start_gateway(tmp_path, processes, stack("kafka", "bootstrap"), unique)
    setup.gateway.wait_ready()
    url = f"{setup.url}/api/v1/write"
    body = snappy_compress(
        encode_write_request([time_series({"__name__": "r", "cluster": "alpha"}, (1.0, 1))])
    )

    def status(token: str) -> int:
        headers = {**HEADERS, "Authorization": f"Bearer {token}"}
        return httpx.post(url, content=body, headers=headers, timeout=30).status_code

    assert status(TOKEN_A) == 204
    tenants_file = Path(setup.gateway.settings["tenants_file"])
    rotated = tenants()
    rotated[0]["bearer_token_hash"] = hash_token("the-new-token")
    tenants_file.write_text(yaml.safe_dump({"tenants": rotated}))
    setup.gateway.signal(signal.SIGHUP)
    wait_for(lambda: status("the-new-token") == 204, 30, "the rotated token accepted")
    assert status(TOKEN_A) == 401
    tenants_file.write_text("tenants: [{name: 'bad/id'}]\n")
    setup.gateway.signal(signal.SIGHUP)
    wait_for(
        lambda: setup.gateway.metric("ferryman_gateway_reloads_total", result="failure") == 1,
        30,
        "the failed reload counted",
    )
    assert status("the-new-token") == 204
    assert setup.gateway.alive()
