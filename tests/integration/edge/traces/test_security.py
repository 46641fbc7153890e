"""TLS (a CA the test makes, client certificates optional) and the bearer token on both
listeners; SIGHUP reload of the token and the labels."""

from __future__ import annotations

import signal
import ssl

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.integration.edge.traces.otlp import (
    all_span_ids,
    make_spans,
    read_back,
    settings,
    span_ids,
)
from tests.integration.kube import issue_cert, make_ca
from tests.integration.pipeline import EdgeTraces, create_topics, wait_for

pytestmark = pytest.mark.integration

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SERVER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def topic(stack, unique: str) -> str:
    name = f"traces-{unique}"
    create_topics(stack("kafka", "bootstrap"), (name, 2))
    return name


def test_tls_and_bearer_token_on_both_listeners(
    stack, processes, tmp_path, topic, unique, monkeypatch
):
    # requests (under the SDK's HTTP exporter) prefers these to the exporter's own CA.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = tmp_path / "pki"
    make_ca(pki, "ca", "ferryman-test-ca")
    issue_cert(pki, "server", "localhost", "ca", SERVER_EXT)
    issue_cert(pki, "client", "an-application", "ca", CLIENT_EXT)
    (tmp_path / "token").write_text(f"secret-{unique}\n")
    bootstrap = stack("kafka", "bootstrap")
    config = settings(
        bootstrap,
        topic,
        auth={"bearer_token_file": str(tmp_path / "token")},
        tls={
            "cert_file": str(pki / "server.crt"),
            "key_file": str(pki / "server.key"),
            "client_ca_file": str(pki / "ca.crt"),
        },
    )
    receiver = processes(EdgeTraces(tmp_path, config)).wait_ready()
    token = {"authorization": f"Bearer secret-{unique}"}
    url = f"https://{receiver.http}/v1/traces"

    # The SDK's exporters, with the CA, a client certificate and the token.
    by_grpc = make_spans(f"grpc-{unique}", traces=2, per_trace=2)
    by_http = make_spans(f"http-{unique}", traces=2, per_trace=2)
    grpc_exporter = GrpcSpanExporter(
        endpoint=f"https://{receiver.grpc}",
        credentials=grpc.ssl_channel_credentials(
            (pki / "ca.crt").read_bytes(),
            (pki / "client.key").read_bytes(),
            (pki / "client.crt").read_bytes(),
        ),
        headers=token,
        timeout=30,
    )
    http_exporter = HttpSpanExporter(
        endpoint=url,
        certificate_file=str(pki / "ca.crt"),
        client_certificate_file=str(pki / "client.crt"),
        client_key_file=str(pki / "client.key"),
        headers=token,
        timeout=30,
    )
    assert grpc_exporter.export(by_grpc) == SpanExportResult.SUCCESS
    assert http_exporter.export(by_http) == SpanExportResult.SUCCESS
    grpc_exporter.shutdown()
    http_exporter.shutdown()
    wanted = span_ids(by_grpc) | span_ids(by_http)
    assert sorted(all_span_ids(read_back(bootstrap, topic, wanted))) == sorted(wanted)

    body = encode_spans(make_spans("x", 1, 1)).SerializeToString()
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    with httpx.Client(verify=context, timeout=30) as client:
        assert client.post(url, content=body, headers=PROTOBUF).status_code == 401
        wrong = {**PROTOBUF, "Authorization": "Bearer not-it"}
        assert client.post(url, content=body, headers=wrong).status_code == 401
        right = {**PROTOBUF, "Authorization": f"Bearer secret-{unique}"}
        assert client.post(url, content=body, headers=right).status_code == 200
    # Without a client certificate the handshake fails: no answer at all.
    only_ca = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with httpx.Client(verify=only_ca, timeout=30) as client, pytest.raises(httpx.TransportError):
        client.post(url, content=body, headers=PROTOBUF)
    # Plain text to a TLS listener gets nowhere either.
    with pytest.raises(httpx.TransportError):
        httpx.post(f"http://{receiver.http}/v1/traces", content=body, headers=PROTOBUF, timeout=5)

    credentials = grpc.ssl_channel_credentials(
        (pki / "ca.crt").read_bytes(),
        (pki / "client.key").read_bytes(),
        (pki / "client.crt").read_bytes(),
    )
    with grpc.secure_channel(receiver.grpc, credentials) as channel:
        export = channel.unary_unary(EXPORT)
        with pytest.raises(grpc.RpcError) as refused:
            export(body, metadata=(("authorization", "Bearer not-it"),), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        export(body, metadata=tuple(token.items()), timeout=30)
    assert receiver.metric("ferryman_errors_total", error_type="unauthenticated") == 3
    assert f"secret-{unique}" not in receiver.output()


def test_sighup_reloads_token_and_labels_and_keeps_a_broken_file_out(
    stack, processes, tmp_path, topic, unique
):
    import yaml

    bootstrap = stack("kafka", "bootstrap")
    config = settings(bootstrap, topic, auth={"bearer_token": "first"})
    config["external_labels"] = {"cluster": f"{unique}-a"}
    receiver = processes(EdgeTraces(tmp_path, config)).wait_ready()
    url = f"http://{receiver.http}/v1/traces"
    batches = [make_spans(f"reload-{unique}", traces=1, per_trace=1) for _ in range(3)]

    def post(token: str, batch: int = 0) -> int:
        headers = {**PROTOBUF, "Authorization": f"Bearer {token}"}
        body = encode_spans(batches[batch]).SerializeToString()
        return httpx.post(url, content=body, headers=headers, timeout=30).status_code

    assert post("first", 0) == 200
    config["ferryman"]["auth"] = {"bearer_token": "second"}
    config["external_labels"] = {"cluster": f"{unique}-b"}
    receiver.config.write_text(yaml.safe_dump(config))
    receiver.signal(signal.SIGHUP)
    wait_for(
        lambda: receiver.metric("ferryman_config_reloads_total", result="success") == 1,
        30,
        "the reload",
        interval=0.1,
    )
    assert post("first") == 401
    assert post("second", 1) == 200

    receiver.config.write_text("ferryman: {limits: {max_request_bytes: lots}}\n")
    receiver.signal(signal.SIGHUP)
    wait_for(
        lambda: receiver.metric("ferryman_config_reloads_total", result="failure") == 1,
        30,
        "the failed reload",
        interval=0.1,
    )
    assert post("second", 2) == 200
    wanted = [span_ids(batch) for batch in batches]
    messages = read_back(bootstrap, topic, set().union(*wanted))
    cluster_of = {span.span_id: m.headers["cluster"] for m in messages for span in m.spans()}
    assert [{cluster_of[i] for i in ids} for ids in wanted] == [
        {f"{unique}-a".encode()},
        {f"{unique}-b".encode()},
        {f"{unique}-b".encode()},
    ]
    assert receiver.alive()
