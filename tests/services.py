"""Reaching the real services integration tests need; skip locally, fail under CI."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pytest

RABBITMQ_URL = os.environ.get("OBSERVML_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_URL = os.environ.get("OBSERVML_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
#: Small real data files shipped with the tests (MIT ObservML tables, see its README.md).
TEST_DATA = Path(__file__).resolve().parent / "data"
#: The real data sets beside the project (``../shared/datasets``), for what is not shipped
#: (SKAB is GPL and is never copied in).
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def service_missing(reason: str) -> NoReturn:
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


def dataset_path(name: str) -> Path:
    """Return a real data file: ``tests/data`` first, then ``../shared/datasets``.

    Skips locally and fails under CI when neither has it.
    """
    for folder in (TEST_DATA, DATASETS):
        if (folder / name).is_file():
            return folder / name
    service_missing(f"real data file {name!r} is in neither {TEST_DATA} nor {DATASETS}")


def read_dataset(name: str) -> pd.DataFrame:
    """Read one CSV of the real data (see :func:`dataset_path`)."""
    return pd.read_csv(dataset_path(name))
