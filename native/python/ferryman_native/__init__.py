"""The edge's native hot paths (``native/src/lib.rs``: the log shipper's Loki encoder;
``native/src/otlp.rs``: the traces receiver's splitter; ``native/src/rw2.rs``: the
gateway's remote write 2.0 conversion; ``native/src/relabel.rs``: relabeling;
``native/src/scrape.rs``: the metrics shipper's scrape pass), re-exported from the
extension module beside this file so that the package can carry its type stubs."""

from .ferryman_native import (
    NativeRelabeler,
    RelabelDeclined,
    SampleBuffers,
    SampleLimitExceeded,
    ScrapeCache,
    lines_deltas,
    loki_push_parts,
    loki_push_request,
    loki_push_split,
    otlp_split,
    parse_exposition,
    relabel_regex_declined,
    relabel_regex_fullmatch,
    relabel_regex_shape_matches,
    rw2_convert,
)

__all__ = [
    "NativeRelabeler",
    "RelabelDeclined",
    "SampleBuffers",
    "SampleLimitExceeded",
    "ScrapeCache",
    "lines_deltas",
    "loki_push_parts",
    "loki_push_request",
    "loki_push_split",
    "otlp_split",
    "parse_exposition",
    "relabel_regex_declined",
    "relabel_regex_fullmatch",
    "relabel_regex_shape_matches",
    "rw2_convert",
]
