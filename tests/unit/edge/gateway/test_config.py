from __future__ import annotations

import pytest

from edge.gateway.config import load_config
from ferryman.errors import ConfigError


def _write(tmp_path, text: str):
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_a_plain_password_is_refused(tmp_path):
    path = _write(
        tmp_path,
        "tenants:\n  - name: a\n    clusters: [x]\n"
        "    basic_auth: {username: a, password_hash: hunter2}\n",
    )
    with pytest.raises(ConfigError, match="not a hash"):
        load_config(path)


def test_tenants_need_a_credential_and_unique_names(tmp_path):
    token = "sha256:" + "0" * 64
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        f"tenants:\n  - {{name: a, clusters: [x], bearer_token_hash: '{token}'}}\n"
        "  - {name: b, clusters: [y]}\n"
    )
    path = _write(
        tmp_path,
        f"tenants_file: {tenants}\n"
        f"tenants: [{{name: a, clusters: [x], bearer_token_hash: '{token}'}}]\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "a is defined twice" in str(caught.value)
    assert "b has neither a token nor basic auth" in str(caught.value)


def test_a_bad_tenant_id_and_an_unknown_key_are_refused(tmp_path):
    path = _write(
        tmp_path,
        "tenants: [{name: 'a/b', clusters: [x], bearer_token_hash: 'sha256:00'}]\nlisen: x\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "tenant id" in text and "sha256:HEX" in text and "lisen" in text
