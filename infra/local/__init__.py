"""The local stack: real services on 127.0.0.1, installed and cached under one home."""

from .catalogue import KAFKA_TOPICS, SERVICES
from .errors import InstallError, StackError, StartError
from .paths import Layout, default_layout
from .supervisor import down, format_status, load_state, status, up

__all__ = [
    "KAFKA_TOPICS",
    "SERVICES",
    "InstallError",
    "Layout",
    "StackError",
    "StartError",
    "default_layout",
    "down",
    "format_status",
    "load_state",
    "status",
    "up",
]
