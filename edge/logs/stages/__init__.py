"""Promtail-style ``pipeline_stages`` for the edge log shipper."""

from .config import STAGE_NAMES, StageConfig
from .pipeline import FilePipeline, build_stages
from .record import Record, Stage, StageMetrics

__all__ = [
    "STAGE_NAMES",
    "FilePipeline",
    "Record",
    "Stage",
    "StageConfig",
    "StageMetrics",
    "build_stages",
]
