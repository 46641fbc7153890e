from __future__ import annotations

import base64

from edge.gateway.auth import Authenticator, hash_password, hash_token, verify_password
from edge.gateway.config import BasicAuth, Tenant, valid_tenant_id


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_password_hashes_are_salted_and_verify():
    first, second = hash_password("pw", iterations=1000), hash_password("pw", iterations=1000)
    assert first != second
    assert first.startswith("pbkdf2-sha256:1000:")
    assert verify_password("pw", first) and verify_password("pw", second)
    assert not verify_password("pW", first)
    assert verify_password("tok", hash_token("tok"))


def test_authenticator_finds_the_tenant_of_a_token_or_password():
    a = Tenant(name="a", bearer_token_hash=hash_token("secret-a"), clusters=("x",))
    b = Tenant(
        name="b",
        basic_auth=BasicAuth(username="bob", password_hash=hash_password("pw", iterations=1000)),
        clusters=("y",),
    )
    auth = Authenticator([a, b])
    assert auth.tenant("Bearer secret-a") is a
    assert auth.tenant("bearer  secret-a ") is a
    assert auth.tenant(_basic("bob", "pw")) is b
    assert auth.tenant(_basic("bob", "pw")) is b  # the remembered path
    for wrong in (
        None,
        "",
        "Bearer",
        "Bearer secret-b",
        _basic("bob", "PW"),
        _basic("a", "x"),
        "Basic %%%",
        "Digest x",
        _basic("bob", "pw")[:-2],
    ):
        assert auth.tenant(wrong) is None, wrong


def test_tenant_ids_follow_mimir_and_loki_rules():
    assert valid_tenant_id("team-a_1.(x)*!'")
    for bad in ("", ".", "..", "a/b", "a b", "é", "x" * 151):
        assert not valid_tenant_id(bad), bad
    assert valid_tenant_id("x" * 150)


def test_a_client_certificate_subject_names_a_tenant_when_no_header_does():
    from edge.gateway.auth import subject_of

    c = Tenant(name="c", client_subject="CN=agent,O=ops", clusters=("z",))
    a = Tenant(name="a", bearer_token_hash=hash_token("secret-a"), clusters=("x",))
    auth = Authenticator([a, c])
    peer = {"subject": ((("commonName", "agent"),), (("organizationName", "ops"),))}
    assert subject_of(peer) == "CN=agent,O=ops"
    assert subject_of(None) is None and subject_of({}) is None
    assert auth.tenant(None, "CN=agent,O=ops") is c
    assert auth.tenant(None, "CN=agent") is None
    assert auth.tenant("Bearer secret-a", "CN=agent,O=ops") is a  # the header wins
    assert auth.tenant("Bearer wrong", "CN=agent,O=ops") is None
