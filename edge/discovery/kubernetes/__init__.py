"""Prometheus-compatible ``kubernetes_sd_configs`` (roles node, pod, service,
endpoints, endpointslice) for the edge shippers.

``labels`` maps API objects to target groups (pure), ``reflector`` lists and watches
the API server, ``discoverer`` ties them to the shipper's Discoverer interface.
"""

from .discoverer import KubernetesSD

__all__ = ["KubernetesSD"]
