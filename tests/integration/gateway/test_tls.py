"""HTTPS on the gateway, and a tenant authenticated by its client certificate."""

from __future__ import annotations

import ssl
import time

import grpc
import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from ferryman import headers as h
from ferryman.wire.remote_write import HEADERS, encode_write_request, snappy_compress
from tests.integration.gateway.helpers import TOKEN_A, messages, sdk_spans, start_gateway
from tests.integration.kube import issue_cert, make_ca
from tests.integration.pipeline import free_port, time_series

SERVER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


def test_https_with_a_token_or_a_client_certificate(stack, tmp_path, processes, unique):
    pki = tmp_path / "pki"
    make_ca(pki, "ca", "gateway-test-ca")
    issue_cert(pki, "server", "localhost", "ca", SERVER_EXT)
    issue_cert(pki, "client", "cluster-c-agent", "ca", CLIENT_EXT)
    make_ca(pki, "other", "someone-else")
    issue_cert(pki, "stranger", "cluster-c-agent", "other", CLIENT_EXT)
    setup = start_gateway(
        tmp_path,
        processes,
        stack("kafka", "bootstrap"),
        unique,
        tls={
            "cert_file": str(pki / "server.crt"),
            "key_file": str(pki / "server.key"),
            "client_ca_file": str(pki / "ca.crt"),
        },
        tenants=[{"name": "team-c", "client_subject": "CN=cluster-c-agent", "clusters": ["gamma"]}],
    )
    url = f"https://{setup.gateway.settings['listen']}/api/v1/write"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(
                f"https://{setup.gateway.settings['listen']}/readyz",
                verify=ssl.create_default_context(cafile=str(pki / "ca.crt")),
                timeout=2,
            ).raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, setup.gateway.output()[-2000:]
            time.sleep(0.2)

    def body(cluster: str) -> bytes:
        series = [time_series({"__name__": "tls", "cluster": cluster}, (1.0, 1))]
        return snappy_compress(encode_write_request(series))

    def context(name: str | None) -> ssl.SSLContext:
        out = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        if name is not None:
            out.load_cert_chain(str(pki / f"{name}.crt"), str(pki / f"{name}.key"))
        return out

    with_token = {**HEADERS, "Authorization": f"Bearer {TOKEN_A}"}
    answer = httpx.post(url, content=body("alpha"), headers=with_token, verify=context(None))
    assert answer.status_code == 204
    answer = httpx.post(url, content=body("gamma"), headers=HEADERS, verify=context("client"))
    assert answer.status_code == 204, answer.text
    answer = httpx.post(url, content=body("gamma"), headers=HEADERS, verify=context(None))
    assert answer.status_code == 401
    # a certificate of the same name from another CA does not even get through TLS
    try:
        answer = httpx.post(url, content=body("gamma"), headers=HEADERS, verify=context("stranger"))
        refused = answer.status_code
    except httpx.HTTPError:
        refused = 0
    assert refused in {0, 401}
    found = messages(setup.bootstrap, setup.metrics)
    assert sorted(dict(m.headers)[h.TENANT] for m in found) == [b"team-a", b"team-c"]


def test_otlp_grpc_over_tls_with_a_token(stack, tmp_path, processes, unique):
    """With tls: set, the gRPC listener serves TLS with the same certificate: the SDK's
    gRPC exporter delivers over it with a token; a plaintext client gets nothing in."""

    pki = tmp_path / "pki"
    make_ca(pki, "ca", "gateway-test-ca")
    issue_cert(pki, "server", "localhost", "ca", SERVER_EXT)
    grpc_listen = f"127.0.0.1:{free_port()}"
    setup = start_gateway(
        tmp_path,
        processes,
        stack("kafka", "bootstrap"),
        unique,
        grpc_listen=grpc_listen,
        tls={"cert_file": str(pki / "server.crt"), "key_file": str(pki / "server.key")},
    )
    ca = grpc.ssl_channel_credentials((pki / "ca.crt").read_bytes())
    token = (("authorization", f"Bearer {TOKEN_A}"),)
    spans = sdk_spans(unique, "alpha", 3)
    exporter = OTLPSpanExporter(endpoint=grpc_listen, credentials=ca, headers=token, timeout=30)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    plain = OTLPSpanExporter(endpoint=grpc_listen, insecure=True, headers=token, timeout=5)
    try:
        assert plain.export(sdk_spans(unique, "alpha", 1)) == SpanExportResult.FAILURE
    finally:
        plain.shutdown()
    found = messages(setup.bootstrap, setup.traces)
    assert {m.key for m in found} == {s.context.trace_id.to_bytes(16, "big") for s in spans}
    assert {dict(m.headers)[h.TENANT] for m in found} == {b"team-a"}
