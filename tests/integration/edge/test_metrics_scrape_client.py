"""The metrics shipper's scrape client against a real HTTPS target in this process:
the CA, the client certificate, ``server_name`` (SNI), gzip, the body size limit,
the timeout and HTTP errors, each seen through a scrape."""

from __future__ import annotations

import asyncio
import gzip
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.metrics.config import ScrapeConfig, TLSConfig
from edge.metrics.scrape import ScrapeLoop, ScrapeResult
from edge.metrics.series import SeriesBuilder
from edge.metrics.shipper import _client, _tls_context
from edge.metrics.targets import Target
from tests.integration.kube import issue_cert, make_ca

BODY = b"".join(b'sc_requests_total{path="/p%d"} %d\n' % (i, i) for i in range(200))
# The certificate names only this host: a scrape of 127.0.0.1 needs server_name.
SERVER_EXT = "subjectAltName=DNS:metrics.target.internal\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


@dataclass
class Seen:
    sni: list[str | None] = field(default_factory=list)
    client_cn: list[str] = field(default_factory=list)
    headers: list[bytes] = field(default_factory=list)


def _pki(directory: Path) -> Path:
    make_ca(directory, "ca", "scrape-test-ca")
    issue_cert(directory, "server", "metrics.target.internal", "ca", SERVER_EXT)
    issue_cert(directory, "client", "edge-agent", "ca", CLIENT_EXT)
    make_ca(directory, "other", "another-ca")
    return directory


@asynccontextmanager
async def _target(pki: Path, seen: Seen) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.sni_callback = lambda _socket, name, _context: seen.sni.append(name)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert: Any = writer.get_extra_info("peercert") or {}
        seen.client_cn += [
            v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"
        ]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.headers.append(head)
                path = head.split(b" ")[1]
                status, extra, body = b"200 OK", b"", BODY
                if path == b"/gzip":
                    extra, body = b"Content-Encoding: gzip\r\n", gzip.compress(BODY)
                elif path == b"/slow":
                    await asyncio.sleep(3)  # past the scrape timeout: the client leaves
                elif path == b"/down":
                    status, body = b"503 Service Unavailable", b"down\n"
                writer.write(
                    b"HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n%s"
                    b"Content-Length: %d\r\n\r\n%s" % (status, extra, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the test ends while /slow sleeps
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _scrape(port: int, path: str, timeout: float = 2.0, **job: Any) -> ScrapeResult:
    config = ScrapeConfig.model_validate({"job_name": "tls", "scheme": "https", **job})
    target = Target("tls", f"https://127.0.0.1:{port}{path}", (("job", "tls"),), 5.0, timeout)
    builder = SeriesBuilder(
        target.labels, honor_labels=False, metric_relabel=None, external_labels={}, buckets=1
    )
    loop = ScrapeLoop(
        target,
        _client(config),
        builder,
        lambda bucket, sample: None,
        honor_timestamps=True,
        sample_limit=0,
        body_size_limit=config.body_size_limit,
        auth_header=config.auth_header(),
        sni_hostname=config.tls_config.server_name,
    )
    try:
        return await loop.scrape_once()
    finally:
        await loop.close()


def test_tls_sni_client_cert_gzip_limit_timeout_and_errors(tmp_path: Path) -> None:
    pki = _pki(tmp_path / "pki")
    seen = Seen()
    mtls = {
        "ca_file": str(pki / "ca.crt"),
        "cert_file": str(pki / "client.crt"),
        "key_file": str(pki / "client.key"),
        "server_name": "metrics.target.internal",
    }

    async def scenario() -> dict[str, ScrapeResult]:
        async with _target(pki, seen) as port:
            return {
                "ok": await _scrape(
                    port, "/metrics", tls_config=mtls, authorization={"credentials": "t0ken"}
                ),
                "gzip": await _scrape(port, "/gzip", tls_config=mtls),
                # BODY is larger than the limit, its gzip form smaller: the limit is
                # on the decoded body.
                "gzip_limit": await _scrape(
                    port, "/gzip", tls_config=mtls, body_size_limit=f"{len(BODY) - 1}B"
                ),
                "no_sni": await _scrape(port, "/metrics", tls_config={**mtls, "server_name": None}),
                "no_client_cert": await _scrape(
                    port, "/metrics", tls_config={**mtls, "cert_file": None, "key_file": None}
                ),
                "other_ca": await _scrape(
                    port, "/metrics", tls_config={**mtls, "ca_file": str(pki / "other.crt")}
                ),
                # Nothing verified, the client certificate still presented.
                "insecure": await _scrape(
                    port,
                    "/metrics",
                    tls_config={**mtls, "server_name": None, "insecure_skip_verify": True},
                ),
                "slow": await _scrape(port, "/slow", tls_config=mtls, timeout=0.5),
                "down": await _scrape(port, "/down", tls_config=mtls),
            }

    results = asyncio.run(scenario())
    assert seen.sni[0] == "metrics.target.internal"
    assert "edge-agent" in seen.client_cn
    assert b"authorization: bearer t0ken" in seen.headers[0].lower()
    assert b"accept-encoding: gzip" in seen.headers[0].lower()
    assert (results["ok"].up, results["ok"].scraped) == (True, 200)
    assert (results["gzip"].up, results["gzip"].scraped) == (True, 200)
    assert "body_size_limit" in results["gzip_limit"].error
    for refused in ("no_sni", "other_ca"):
        assert not results[refused].up and "Certificate" in results[refused].error, refused
    assert not results["no_client_cert"].up
    assert (results["insecure"].up, results["insecure"].scraped) == (True, 200)
    assert results["slow"].error == "timed out after 0.5s"
    assert results["down"].error == "server returned HTTP 503"


def test_targets_share_a_tls_context_until_a_file_changes(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_ca(pki, "ca", "scrape-test-ca")
    issue_cert(pki, "client", "edge-agent", "ca", CLIENT_EXT)
    tls = TLSConfig(
        ca_file=pki / "ca.crt", cert_file=pki / "client.crt", key_file=pki / "client.key"
    )
    first = _tls_context(tls)
    assert isinstance(first, ssl.SSLContext)
    assert _tls_context(tls) is first
    assert _tls_context(TLSConfig(ca_file=pki / "ca.crt")) is not first
    stat = (pki / "client.crt").stat()
    os.utime(pki / "client.crt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    rotated = _tls_context(tls)
    assert rotated is not first
    assert _tls_context(tls) is rotated
