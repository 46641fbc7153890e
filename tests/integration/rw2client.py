"""rw2client: the Prometheus project's remote-write client, as a command for tests.

``tests/integration/gateway/rw2client`` (built by ``infra/local/build/rw2client.sh``
into the stack home, registered in the stack as ``rw2client``) wraps
``github.com/prometheus/client_golang/exp/api/remote``: it sends one remote write 2.0
request (``io.prometheus.write.v2.Request`` with its symbols table) or 1.0
``prometheus.WriteRequest`` and prints the ``WriteResponseStats`` the client parsed
from the answer's ``X-Prometheus-Remote-Write-*-Written`` headers. That client counts
a 2xx answer to a 2.0 request without those headers as a failure.

:func:`send` runs it with a series description (see :class:`Series`) and returns
its :class:`Result`.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.paths import default_layout

ROOT = Path(__file__).resolve().parents[2]

#: The description the program reads: ``{"series": [Series, ...]}`` where a series is
#: ``{"labels": {..}, "samples": [{"value", "timestamp"}], "histograms": [..],
#: "exemplars": [{"labels", "value", "timestamp"}], "metadata": {"type", "help",
#: "unit"}, "created_timestamp": ms}`` (see the program's doc comment for histograms).
Series = dict[str, Any]


def rw2client_binary() -> Path:
    """The rw2client binary under the stack home, built first if missing (idempotent
    and instant when its sources did not change)."""
    binary = default_layout().bin / "rw2client"
    script = ROOT / "infra" / "local" / "build" / "rw2client.sh"
    subprocess.run(["bash", str(script), str(binary)], check=True, stdout=subprocess.DEVNULL)
    return binary


@dataclass(frozen=True)
class Result:
    """What the client reported: its parsed stats, its error text ("" on success),
    the HTTP status of the last answer and that answer's ``-Written`` headers."""

    samples: int
    histograms: int
    exemplars: int
    error: str
    status: int
    written_headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error


def send(
    url: str,
    series: list[Series],
    *,
    token: str = "",
    proto: int = 2,
    max_retries: int = 1,
) -> Result:
    """Send ``series`` to ``url`` (a base URL; the client posts to ``/api/v1/write``)
    in remote write ``proto`` (2 or 1) with bearer ``token``."""
    argv = [
        str(rw2client_binary()),
        f"-url={url}",
        f"-proto={proto}",
        f"-max-retries={max_retries}",
        "-input=-",
    ]
    if token:
        argv.append(f"-token={token}")
    done = subprocess.run(
        argv,
        input=json.dumps({"series": series}).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rw2client exited {done.returncode}: {done.stderr.decode()}")
    out = json.loads(done.stdout)
    return Result(
        samples=out["samples"],
        histograms=out["histograms"],
        exemplars=out["exemplars"],
        error=out.get("error", ""),
        status=out["status"],
        written_headers=out["written_headers"],
    )
