"""Kafka over TLS and SASL on the real stack: the broker's SASL_SSL listener
(SCRAM-SHA-512, certificates made by the stack) carries a file from the edge log
shipper to the ``loki`` worker; a wrong password and a wrong CA stop every entry point
at start with one line; no log of the run holds the password.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.functions.test_loki import query
from tests.integration.pipeline import ROOT, EdgeLogs, create_topics, free_port, wait_for


def _security(stack, **sasl: Any) -> dict[str, Any]:
    return {
        "bootstrap_servers": stack("kafka", "sasl_bootstrap"),
        "security_protocol": "SASL_SSL",
        "ssl": {"ca_file": stack("kafka", "ca_file")},
        "sasl": {
            "mechanism": "SCRAM-SHA-512",
            "username": stack("kafka", "sasl_username"),
            **(sasl or {"password_file": stack("kafka", "sasl_password_file")}),
        },
    }


def _password(stack) -> str:
    return Path(stack("kafka", "sasl_password_file")).read_text().strip()


def _no_secret_in(paths: list[Path], *secrets: str) -> None:
    for path in paths:
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{path} holds a secret"


def _logs_of(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and p.suffix in (".log", ".out", ".err")]


def test_a_file_travels_from_the_shipper_to_loki_over_sasl_ssl(
    stack, unique, tmp_path, processes, worker
):
    create_topics(stack("kafka", "bootstrap"), (unique, 2))
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [f"{unique} line {n:03d} over SASL_SSL" for n in range(60)]
    (logs / "app.log").write_text("".join(f"{line}\n" for line in lines))
    shipper = processes(
        EdgeLogs(
            tmp_path,
            {
                "positions": {"filename": str(tmp_path / "positions.json")},
                "scrape_configs": [
                    {
                        "job_name": "files",
                        "static_configs": [
                            {"labels": {"job": unique, "__path__": str(logs / "*.log")}}
                        ],
                    }
                ],
                "ferryman": {
                    # The shipper reads its password from a variable, the worker from a file.
                    "kafka": {
                        **_security(stack, password_env="FERRYMAN_TEST_KAFKA_PASSWORD"),
                        "topic": unique,
                    },
                    "listen": "127.0.0.1:0",
                    "batch_wait": "200ms",
                    "rescan_interval": "300ms",
                },
            },
            env={"FERRYMAN_TEST_KAFKA_PASSWORD": _password(stack)},
        )
    )
    security = _security(stack)
    # Mutual TLS on top: the listener checks a client certificate when one is sent.
    security["ssl"] |= {
        "cert_file": stack("kafka", "client_cert_file"),
        "key_file": stack("kafka", "client_key_file"),
    }
    loki = worker(
        "loki",
        unique,
        {"url": stack("victorialogs", "http"), "push_path": "/insert/loki/api/v1/push"},
        kafka=security,
    )
    base = stack("victorialogs", "http")
    wait_for(
        lambda: sorted(row["_msg"] for row in query(base, unique)) == lines,
        60,
        "every line in VictoriaLogs",
    )
    assert shipper.terminate(timeout=30) == 0
    assert loki.terminate(timeout=30) == 0

    # dlq replay through the same listener, with the worker's settings.
    replay = subprocess.run(
        [sys.executable, "-m", "ferryman", "dlq", "replay", "--config", str(loki.config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert "scanned 0, replayed 0" in replay.stdout
    (tmp_path / "replay.out").write_text(replay.stdout)
    (tmp_path / "replay.err").write_text(replay.stderr)

    written = [*_logs_of(tmp_path), Path(stack("kafka", "ca_file")).parents[3] / "logs/kafka.log"]
    assert len(written) >= 5
    _no_secret_in(written, _password(stack))


def _other_ca(tmp: Path) -> Path:
    """A CA that did not sign the broker's certificate."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", "other-ca.key", "-out", "other-ca.pem", "-subj", "/CN=someone else"],
        cwd=tmp, check=True, capture_output=True,
    )  # fmt: skip
    return tmp / "other-ca.pem"


def _argv(kind: str, config: Path, topic: str) -> list[str]:
    if kind == "worker":
        return ["worker", "loki", "--config", str(config)]
    if kind == "retry worker":
        return ["worker", "loki", "--retry-lane", "--config", str(config)]
    if kind == "dlq replay":
        return ["dlq", "replay", "--config", str(config), "--topic", topic]
    return ["edge", kind.split()[1], "--config", str(config)]


def _settings(kind: str, kafka: dict[str, Any], topic: str, tmp: Path, stack) -> dict[str, Any]:
    if kind.startswith("edge"):
        ferryman = {"kafka": {**kafka, "topic": topic}, "listen": f"127.0.0.1:{free_port()}"}
        if kind == "edge metrics":
            ferryman["buffer"] = {"directory": str(tmp / "buffer")}
            return {"scrape_configs": [], "ferryman": ferryman}
        return {
            "positions": {"filename": str(tmp / "positions.json")},
            "scrape_configs": [],
            "ferryman": ferryman,
        }
    settings = {
        "kafka": {**kafka, "input_topic": topic},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "config": {"url": stack("victorialogs", "http"), "push_path": "/insert/loki/api/v1/push"},
    }
    if kind == "retry worker":
        settings["retry_lane"] = {"redis_url": stack("redis", "url"), "namespace": topic}
    return settings


KINDS = ["edge logs", "edge metrics", "worker", "retry worker", "dlq replay"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["wrong password", "wrong CA"])
def test_a_refused_login_or_certificate_stops_the_process_with_one_line(
    stack, unique, tmp_path, kind, fault
):
    kafka = _security(stack, password_env="FERRYMAN_TEST_KAFKA_PASSWORD")
    password = _password(stack)
    wrong = "not-the-password-" + unique
    if fault == "wrong password":
        given = wrong
        expected = re.escape(
            f"kafka: authentication failed for user {stack('kafka', 'sasl_username')} "
            f"(SCRAM-SHA-512) at {stack('kafka', 'sasl_bootstrap')}"
        )
    else:
        given = password
        ca = _other_ca(tmp_path)
        kafka["ssl"] = {"ca_file": str(ca)}
        expected = re.escape(
            f"kafka: TLS certificate verification failed at {stack('kafka', 'sasl_bootstrap')}: "
        ) + r"[a-z ]+" + re.escape(f" (CA: {ca})")  # fmt: skip
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(_settings(kind, kafka, unique, tmp_path, stack)))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ferryman", *_argv(kind, config, unique)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        env={**os.environ, "FERRYMAN_TEST_KAFKA_PASSWORD": given},
    )
    took = time.monotonic() - started
    (tmp_path / "process.out").write_text(done.stdout)
    (tmp_path / "process.err").write_text(done.stderr)
    assert done.returncode == 1, done.stderr
    assert took < 15
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(said) == 1, done.stderr
    assert re.search(expected + "$", said[0]), said[0]
    assert "Traceback" not in done.stderr + done.stdout
    _no_secret_in(_logs_of(tmp_path), password, wrong)
