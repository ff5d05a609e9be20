"""Reaching what the tests need beyond the package: services, optional modules, Chromium, data.

Whatever is missing skips the test locally and fails it when ``CI`` is set: CI installs every
service, extra and Chromium, so a green CI never hides a skipped test.
"""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path
from types import ModuleType
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
CHROMIUM_MISSING = (
    "no Chromium for PNG export and the browser test: install Debian's chromium"
    " (apt-get install chromium); kaleido looks at BROWSER_PATH, then PATH, then /usr/bin"
)


def fail_under_ci(reason: str) -> None:
    """Fail the test when ``CI`` is set (CI installs everything, so ``reason`` is a CI bug)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, and CI must run every test)", pytrace=False)


def service_missing(reason: str) -> NoReturn:
    """Skip the test (or module), or fail it when ``CI`` is set."""
    fail_under_ci(reason)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, extra: str) -> ModuleType:
    """Import ``name``; when it is not installed, skip locally and fail under CI.

    Args:
        name: The module to import, e.g. ``"pika"`` or ``"playwright.sync_api"``.
        extra: The observml extra that installs it (``./scripts/test`` installs ``all,dev``).
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        service_missing(f"{name} is not installed ({exc}); pip install -e '.[{extra}]'")


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


def find_chromium() -> str | None:
    """Return the browser kaleido would start for PNG export, or None when there is none.

    This is kaleido's own lookup (choreographer's): a browser fetched with
    ``kaleido_get_chrome``, then ``BROWSER_PATH``, then chrome/chromium on ``PATH``, then the
    usual install paths. ``BROWSER_PATH=/nonexistent`` hides an installed Chromium.
    """
    try:
        from choreographer.browsers.chromium import Chromium
    except ModuleNotFoundError:
        return None
    path = Chromium.find_browser(skip_local=False)
    return str(path) if path and Path(path).is_file() else None


def require_chromium() -> str:
    """Return the browser of :func:`find_chromium`; skip locally, fail under CI, without one."""
    require_module("kaleido", "api")
    path = find_chromium()
    if path is None:
        service_missing(CHROMIUM_MISSING)
    return path


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
