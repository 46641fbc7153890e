"""TLS for outgoing HTTP: the ``verify`` argument httpx takes, from the usual options."""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["ssl_verify"]


def ssl_verify(
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    insecure_skip_verify: bool = False,
) -> ssl.SSLContext | bool:
    """System trust by default; a context when a CA or a client certificate (mTLS) is
    given; False when verification is switched off and no client certificate is given
    (with one, a context that presents it and verifies nothing)."""
    if insecure_skip_verify and not cert_file:
        return False
    if not (ca_file or cert_file):
        return True
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context
