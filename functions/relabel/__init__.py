"""``relabel``: a transform from one metrics topic to another.

Each input message (snappy WriteRequest) becomes one output message with the same
key and headers, unless every series in it was dropped. Undecodable input is
dead-lettered with the reason.
"""

from __future__ import annotations

from pydantic import BaseModel

from ferryman.prom.relabel import compile_rules
from ferryman.prom.rewrite import Rewriter
from ferryman.wire.protobuf import DecodeError
from ferryman.wire.remote_write import snappy_compress, snappy_decompress
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered, Output, Record

from .config import RelabelTransformConfig

__all__ = ["SPEC"]


class RelabelTransform:
    def __init__(self, config: RelabelTransformConfig, context: Context) -> None:
        self.rewriter = Rewriter(compile_rules(config.metric_relabel_configs),
                                 config.cache_size)
        self.dropped = context.registry.counter(
            "ferryman_series_dropped_total", "Series dropped by relabeling.", ["function"])
        self.name = context.function

    def handle(self, batch: Batch) -> Delivered:
        outputs: list[Output] = []
        dead: list[tuple[Record, str]] = []
        for record in batch:
            try:
                result = self.rewriter.rewrite(snappy_decompress(record.value))
            except DecodeError as exc:
                dead.append((record, f"undecodable remote-write payload: {exc}"))
                continue
            self.dropped.inc(result.series_in - result.series_out, self.name)
            if result.payload:
                outputs.append(Output(snappy_compress(result.payload), record.key,
                                      record.headers))
        return Delivered(dead=dead, outputs=outputs)

    def close(self) -> None:
        pass


def _create(config: BaseModel, context: Context) -> RelabelTransform:
    assert isinstance(config, RelabelTransformConfig)
    return RelabelTransform(config, context)


SPEC = FunctionSpec(
    name="relabel",
    kind="transform",
    summary="Apply metric_relabel_configs centrally: metrics topic in, metrics topic out.",
    config_model=RelabelTransformConfig,
    create=_create,
    example="""\
metric_relabel_configs:
  - action: labeldrop
    regex: pod_template_hash
  - target_label: tenant
    replacement: team-a
  - source_labels: [__name__]
    regex: go_gc_.*
    action: drop
""",
)
