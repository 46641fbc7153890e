"""The container images: one per registered function and one per edge shipper, all
from ``Containerfile`` (``python -m infra.images``, ``./task images``)."""
