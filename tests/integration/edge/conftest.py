"""Fixtures of the edge tests that need a Kubernetes API: a real kube-apiserver on
etcd per test module (see tests/integration/kube.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.kube import CORE, Cluster, create, running_apiserver


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_apiserver(tmp_path_factory.mktemp("kube")) as started:
        yield started


@pytest.fixture
def api(cluster: Cluster) -> Iterator[httpx.Client]:
    with cluster.http() as client:
        yield client


@pytest.fixture
def namespace(api: httpx.Client, unique: str) -> str:
    create(api, f"{CORE}/namespaces", {"metadata": {"name": unique}})
    return unique
