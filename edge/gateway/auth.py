"""Who sent a request: a tenant from its bearer token or basic-auth credential.

Tokens are compared by their sha256 (a token is random and long: one hash suffices);
passwords by PBKDF2-HMAC-SHA256 with a per-credential salt. Hashes only ever sit in
the configuration; nothing here logs a credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from typing import Any

from .config import Tenant

__all__ = ["Authenticator", "hash_password", "hash_token", "subject_of", "verify_password"]

_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


def subject_of(certificate: dict[str, Any] | None) -> str | None:
    """A verified peer certificate's subject (``ssl`` form) as ``CN=a,O=b``."""
    if not certificate:
        return None
    parts = [
        f"{_SHORT.get(name, name)}={value}"
        for rdn in certificate.get("subject", ())
        for name, value in rdn
    ]
    return ",".join(parts) or None


#: PBKDF2 iterations of new password hashes
ITERATIONS = 200_000


def hash_token(token: str) -> str:
    """``sha256:HEX`` of a bearer token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, *, iterations: int = ITERATIONS) -> str:
    """``pbkdf2-sha256:ITERATIONS:SALT:HASH`` (hex) with a fresh 16-byte salt."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2-sha256:{iterations}:{salt.hex()}:{digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (either hash form), in constant time."""
    if stored.startswith("sha256:"):
        return hmac.compare_digest(hash_token(password), stored)
    _, iterations, salt, digest = stored.split(":")
    found = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(found.hex(), digest)


class Authenticator:
    """Maps an ``Authorization`` header to its tenant (None: unknown or wrong)."""

    def __init__(self, tenants: Iterable[Tenant]) -> None:
        self.by_token: dict[str, Tenant] = {}
        self.by_user: dict[str, Tenant] = {}
        self.by_subject: dict[str, Tenant] = {}
        for tenant in tenants:
            if tenant.bearer_token_hash is not None:
                self.by_token[tenant.bearer_token_hash] = tenant
            if tenant.basic_auth is not None:
                self.by_user[tenant.basic_auth.username] = tenant
            if tenant.client_subject is not None:
                self.by_subject[tenant.client_subject] = tenant
        # A password's hash is slow on purpose: remember the last good ones so that an
        # agent's every request does not pay it (keyed by the sha256 of the header).
        self._good: dict[str, Tenant] = {}

    def tenant(self, authorization: str | None, subject: str | None = None) -> Tenant | None:
        """The tenant of an ``Authorization`` header, else of a verified client
        certificate's ``subject``."""
        if not authorization:
            return self.by_subject.get(subject) if subject else None
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and credential:
            return self.by_token.get(hash_token(credential))
        if scheme.lower() == "basic" and credential:
            return self._basic(credential)
        return None

    def _basic(self, credential: str) -> Tenant | None:
        remembered = hashlib.sha256(credential.encode()).hexdigest()
        known = self._good.get(remembered)
        if known is not None:
            return known
        try:
            user, sep, password = (
                base64.b64decode(credential, validate=True).decode().partition(":")
            )
        except (ValueError, UnicodeDecodeError):
            return None
        tenant = self.by_user.get(user)
        if not sep or tenant is None or tenant.basic_auth is None:
            return None
        if not verify_password(password, tenant.basic_auth.password_hash):
            return None
        if len(self._good) > 10_000:
            self._good.clear()
        self._good[remembered] = tenant
        return tenant
