"""The discovery sections of a scrape config, as Prometheus writes them:
``static_configs``, ``file_sd_configs`` and ``kubernetes_sd_configs``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ferryman.units import Duration

__all__ = [
    "FileSDConfig",
    "KubernetesSDConfig",
    "KubernetesSDNamespaces",
    "KubernetesSDSelector",
    "StaticConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StaticConfig(_Strict):
    targets: tuple[str, ...] = Field((), description="host:port addresses.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels for these targets.")


class FileSDConfig(_Strict):
    files: tuple[str, ...] = Field(description="Globs of JSON/YAML target group files.")
    refresh_interval: Duration = Field(
        300.0, description="Re-read period (default 5m); changes are also watched."
    )


class KubernetesSDNamespaces(_Strict):
    names: tuple[str, ...] = Field((), description="Namespaces to watch (default: all).")
    own_namespace: bool = Field(False, description="Also watch the pod's own namespace.")


class KubernetesSDSelector(_Strict):
    role: str = Field(description="Which role the selector applies to.")
    label: str | None = Field(None, description="Label selector.")
    field: str | None = Field(None, description="Field selector.")


class KubernetesSDConfig(_Strict):
    role: Literal["node", "pod", "service", "endpoints", "endpointslice"] = Field(
        description="What to discover."
    )
    api_server: str | None = Field(None, description="API server URL (default: in-cluster).")
    kubeconfig_file: Path | None = Field(None, description="kubeconfig to use instead.")
    namespaces: KubernetesSDNamespaces = Field(
        default_factory=KubernetesSDNamespaces, description="Namespaces to watch."
    )
    selectors: tuple[KubernetesSDSelector, ...] = Field((), description="Label/field selectors.")
