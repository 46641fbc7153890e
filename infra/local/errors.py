"""Errors of the local stack.

StackError
 ├── InstallError   a service could not be installed
 └── StartError     a service did not start or never became healthy
"""

from __future__ import annotations

__all__ = ["InstallError", "StackError", "StartError"]


class StackError(Exception):
    """Raised when the local stack cannot do what was asked; names the service."""

    def __init__(self, service: str, command: str, detail: str) -> None:
        self.service = service
        self.command = command
        self.detail = detail
        super().__init__(f"{service}: {command}\n{detail}")


class InstallError(StackError):
    """Raised when installing a service failed; carries the command and its output tail."""


class StartError(StackError):
    """Raised when a service exited or stayed unhealthy; carries the tail of its log."""
