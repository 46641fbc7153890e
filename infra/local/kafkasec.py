"""The local Kafka's SASL_SSL listener: its CA and certificates, the SCRAM user and its
password, all made by the stack under ``<home>/data/kafka/`` and kept across starts.

``tls/`` holds a CA of the stack's own (``ca.pem``), the broker's certificate for
``127.0.0.1`` and ``localhost`` (with its key in ``broker-keystore.pem``, Kafka's PEM
keystore) and a client certificate the CA signed (``client.pem``/``client.key``) for
tests of mutual TLS. ``sasl/`` holds the SCRAM user's password (0600). Certificates are
made with the ``openssl`` command once; the user is created through the PLAINTEXT
listener (``AlterUserScramCredentials``) after every start that finds it missing or
holding another password, so an already formatted data directory gets it too.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import StartError
from .install import tail

__all__ = [
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "KafkaSecurityFiles",
    "ensure_certificates",
    "ensure_password",
    "ensure_scram_user",
]

SASL_USERNAME = "ferryman"
SASL_MECHANISM = "SCRAM-SHA-512"

_DAYS = "3650"


class KafkaSecurityFiles:
    """Where the files of one Kafka data directory live."""

    def __init__(self, data: Path) -> None:
        self.tls = data / "tls"
        self.sasl = data / "sasl"

    @property
    def ca_file(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.tls / "broker-keystore.pem"

    @property
    def client_cert(self) -> Path:
        return self.tls / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.tls / "client.key"

    @property
    def password_file(self) -> Path:
        return self.sasl / f"{SASL_USERNAME}.password"

    @property
    def applied_stamp(self) -> Path:
        # The digest of the password last given to the broker: a new password file (or
        # a reformatted log dir, see ensure_scram_user) makes the user be set again.
        return self.sasl / f"{SASL_USERNAME}.applied"


def _openssl(cwd: Path, *args: str) -> None:
    argv = ["openssl", *args]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StartError("kafka", " ".join(argv), tail(proc.stdout + proc.stderr))


def ensure_certificates(files: KafkaSecurityFiles) -> None:
    """Make the CA, the broker's and a client's certificates once (idempotent)."""
    if files.keystore.is_file() and files.client_key.is_file():
        return
    if shutil.which("openssl") is None:
        raise StartError("kafka", "openssl", "the openssl command is needed to make the certs")
    files.tls.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tls-", dir=files.tls.parent))
    try:
        _openssl(
            work,
            "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", _DAYS,
            "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ferryman local stack CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        for name, subject, usage in (
            ("broker", "/CN=localhost", "serverAuth"),
            ("client", f"/CN={SASL_USERNAME}", "clientAuth"),
        ):
            (work / f"{name}.ext").write_text(
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                f"extendedKeyUsage={usage}\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            )
            _openssl(
                work,
                "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", subject,
            )  # fmt: skip
            _openssl(
                work,
                "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(secrets.randbits(63)), "-days", _DAYS,
                "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            )  # fmt: skip
        # Kafka's PEM keystore: the unencrypted PKCS#8 key, then the certificate chain.
        (work / "broker-keystore.pem").write_text(
            (work / "broker.key").read_text() + (work / "broker.pem").read_text()
        )
        for leftover in work.glob("*.csr"):
            leftover.unlink()
        for leftover in work.glob("*.ext"):
            leftover.unlink()
        for key in (*work.glob("*.key"), work / "broker-keystore.pem"):
            key.chmod(0o600)
        shutil.rmtree(files.tls, ignore_errors=True)
        work.rename(files.tls)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_password(files: KafkaSecurityFiles) -> None:
    """Make the SCRAM user's password file (0600) once."""
    if files.password_file.is_file():
        return
    files.sasl.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(files.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(24) + "\n")


def ensure_scram_user(files: KafkaSecurityFiles, bootstrap: str) -> None:
    """Give the broker the SCRAM user unless it has it with this password already."""
    from kafka import KafkaAdminClient
    from kafka.admin import UserScramCredentialUpsertion

    password = files.password_file.read_text().strip()
    digest = hashlib.sha256(password.encode()).hexdigest()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ferryman-stack")
    try:
        known = admin.describe_user_scram_credentials([SASL_USERNAME]).get(SASL_USERNAME) or {}
        mechanisms = {info["mechanism"].name for info in known.get("credential_infos", [])}
        applied = files.applied_stamp.read_text() if files.applied_stamp.is_file() else ""
        if SASL_MECHANISM.replace("-", "_") in mechanisms and applied == digest:
            return
        upsert = UserScramCredentialUpsertion(SASL_USERNAME, SASL_MECHANISM, password)
        errors = admin.alter_user_scram_credentials([upsert])
    finally:
        admin.close()
    if errors.get(SASL_USERNAME):
        raise StartError("kafka", "alter SCRAM user", f"{SASL_USERNAME}: {errors[SASL_USERNAME]}")
    files.applied_stamp.write_text(digest)
