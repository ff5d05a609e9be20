"""Reaching the real services integration tests need; skip locally, fail under CI."""

from __future__ import annotations

import os
import socket

import pytest

RABBITMQ_URL = os.environ.get("OBSERVML_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_URL = os.environ.get("OBSERVML_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


def service_missing(reason: str) -> None:
    """Skip the test, or fail it when ``CI`` is set (a green CI must not hide skipped tests)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so integration tests must run)", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
