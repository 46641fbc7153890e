"""The start-up check of a secured Kafka connection: one clear line, not a hang.

kafka-python retries a refused TLS handshake or SASL login forever, with backoff, and
(3.0.12) often loses the broker's "authentication failed" answer, which arrives
together with the broker closing the connection. So before a process starts its
clients, :func:`check_kafka` connects once by itself, blocking and with timeouts:
TCP, then TLS, then the SASL handshake and login (Kafka's SaslHandshake v1 and
SaslAuthenticate v0 requests, SCRAM as RFC 5802 describes it). A refused certificate or
login raises :class:`~ferryman.errors.KafkaStartError` with one line such as::

    kafka: authentication failed for user ferryman (SCRAM-SHA-512) at 127.0.0.1:9094

A broker that cannot be reached is not an error here: the clients wait for it as
they always do (the edge buffers on disk meanwhile).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import socket
import ssl
import struct

from .errors import KafkaStartError
from .kafkaconfig import KafkaCredentials

__all__ = ["check_kafka"]

log = logging.getLogger("ferryman.kafka")

_SASL_HANDSHAKE = 17
_SASL_AUTHENTICATE = 36
_CLIENT_ID = b"ferryman-check"


class _Closed(Exception):
    """Control flow: the broker closed the connection."""


def check_kafka(
    bootstrap_servers: str, credentials: KafkaCredentials, *, timeout_s: float = 5.0
) -> None:
    """Connect to the first reachable bootstrap server as ``credentials`` say.

    Returns when the login succeeded, when nothing needs checking (PLAINTEXT) or when
    no server could be reached; raises KafkaStartError when TLS or SASL refused us.
    """
    if credentials.security_protocol == "PLAINTEXT":
        return
    for address in (a.strip() for a in bootstrap_servers.split(",") if a.strip()):
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        except (OSError, ValueError) as exc:
            log.info(
                "kafka check: cannot reach %s (%s); the clients will wait for it", address, exc
            )
            continue
        try:
            _check(sock, host, address, credentials)
        except TimeoutError:
            log.info("kafka check: %s did not answer in %.0fs", address, timeout_s)
        finally:
            sock.close()
        return


def _check(sock: socket.socket, host: str, address: str, creds: KafkaCredentials) -> None:
    if creds.ssl_context is not None:
        try:
            sock = creds.ssl_context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raise KafkaStartError(
                f"kafka: TLS certificate verification failed at {address}: "
                f"{exc.verify_message} (CA: {creds.ca_file or 'system trust store'})"
            ) from None
        except ssl.SSLError as exc:
            raise KafkaStartError(
                f"kafka: TLS handshake failed at {address}: {exc.reason or exc}"
            ) from None
        except (ConnectionError, EOFError):
            raise KafkaStartError(
                f"kafka: {address} closed the connection during the TLS handshake "
                f"(is it a {creds.security_protocol} listener?)"
            ) from None
    if creds.sasl_mechanism is None or creds.password is None:
        return
    conversation = _Conversation(sock)
    mechanism = creds.sasl_mechanism
    try:
        error, offered = conversation.handshake(mechanism)
    except (_Closed, ConnectionError, ssl.SSLError):
        raise KafkaStartError(
            f"kafka: {address} closed the connection at the SASL handshake "
            f"(is it a {creds.security_protocol} listener?)"
        ) from None
    if error:
        raise KafkaStartError(
            f"kafka: SASL mechanism {mechanism} is not enabled at {address} "
            f"(offered: {', '.join(offered) or 'none'})"
        )
    failed = KafkaStartError(
        f"kafka: authentication failed for user {creds.username} ({mechanism}) at {address}"
    )
    password = creds.password.get_secret_value()
    username = creds.username or ""
    try:
        if mechanism == "PLAIN":
            ok = conversation.authenticate(f"\0{username}\0{password}".encode()) is not None
        else:
            ok = _scram(conversation, mechanism, username, password)
    except (_Closed, ConnectionError, ssl.SSLError):
        ok = False  # a broker closes the connection after a failed login
    if not ok:
        raise failed


class _Conversation:
    """Kafka requests on a blocking socket, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.correlation_id = 0

    def _request(self, api_key: int, version: int, body: bytes) -> bytes:
        self.correlation_id += 1
        header = struct.pack(">hhih", api_key, version, self.correlation_id, len(_CLIENT_ID))
        frame = header + _CLIENT_ID + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        response = self._read(size)
        if struct.unpack(">i", response[:4])[0] != self.correlation_id:
            raise _Closed("unexpected correlation id")
        return response[4:]

    def _read(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self.sock.recv(n - len(chunks))
            if not chunk:
                raise _Closed("closed")
            chunks += chunk
        return bytes(chunks)

    def handshake(self, mechanism: str) -> tuple[int, list[str]]:
        """SaslHandshake v1: (error code, the mechanisms the listener offers)."""
        name = mechanism.encode()
        body = self._request(_SASL_HANDSHAKE, 1, struct.pack(">h", len(name)) + name)
        error, count = struct.unpack(">hi", body[:6])
        offered, at = [], 6
        for _ in range(max(count, 0)):
            (length,) = struct.unpack(">h", body[at : at + 2])
            offered.append(body[at + 2 : at + 2 + length].decode())
            at += 2 + length
        return error, offered

    def authenticate(self, token: bytes) -> bytes | None:
        """SaslAuthenticate v0: the broker's answer, or None when it refused."""
        body = self._request(_SASL_AUTHENTICATE, 0, struct.pack(">i", len(token)) + token)
        (error,) = struct.unpack(">h", body[:2])
        if error:
            return None
        (message_length,) = struct.unpack(">h", body[2:4])
        at = 4 + max(message_length, 0)
        (length,) = struct.unpack(">i", body[at : at + 4])
        return body[at + 4 : at + 4 + max(length, 0)]


def _scram(conversation: _Conversation, mechanism: str, username: str, password: str) -> bool:
    """An RFC 5802 SCRAM login; True once the broker proved it knows the password too."""
    digest = "sha512" if mechanism.endswith("512") else "sha256"
    name = username.replace("=", "=3D").replace(",", "=2C")
    nonce = secrets.token_urlsafe(24)
    first_bare = f"n={name},r={nonce}"
    answer = conversation.authenticate(f"n,,{first_bare}".encode())
    if answer is None:
        return False
    server_first = answer.decode()
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    if not fields.get("r", "").startswith(nonce):
        return False
    salted = hashlib.pbkdf2_hmac(
        digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", digest)
    final_bare = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.digest(hashlib.new(digest, client_key).digest(), auth_message, digest)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    answer = conversation.authenticate(
        f"{final_bare},p={base64.b64encode(proof).decode()}".encode()
    )
    if answer is None:
        return False
    server_key = hmac.digest(salted, b"Server Key", digest)
    expected = base64.b64encode(hmac.digest(server_key, auth_message, digest)).decode()
    return hmac.compare_digest(answer.decode(), f"v={expected}")
