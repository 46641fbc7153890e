"""The edge log shipper's native hot path (``native/src/lib.rs``), re-exported from the
extension module beside this file so that the package can carry its type stubs."""

from .ferryman_native import lines_deltas, loki_push_parts, loki_push_request, loki_push_split

__all__ = ["lines_deltas", "loki_push_parts", "loki_push_request", "loki_push_split"]
