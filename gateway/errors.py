"""Errors of the gateway package, one tree:

    GatewayError                 anything the gateway refuses to do
    ├── ConfigError              gateway.toml or a node key file is wrong; names the field
    ├── KeyFileError             a signing key file is missing, unreadable or too open
    └── OutboxFull               the outbox holds its bound; new records are refused, not dropped

Rejected node records are not exceptions: they are verdicts (`verify.py`) and frame
rejects (`firmware/metro/wire/frame.py`), counted by reason (`counters.py`).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError, ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class KeyFileError(GatewayError):
    pass


class OutboxFull(GatewayError):
    pass
