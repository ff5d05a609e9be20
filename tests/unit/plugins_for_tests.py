"""Tiny plugins used by the core tests (pluggy-style: defined beside the tests)."""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from observml.plugins.base import HealthReport

if TYPE_CHECKING:
    from datetime import tzinfo as TypeCheckingOnly  # only mypy resolves it


class RecordingPlugin:
    """A plugin that records its lifecycle calls into a shared list."""

    def __init__(
        self,
        plugin_type: str = "mlops",
        *,
        log: list[str] | None = None,
        fail_initialize: bool = False,
        fail_shutdown: bool = False,
    ) -> None:
        self.plugin_type = plugin_type
        self.log = log if log is not None else []
        self.fail_initialize = fail_initialize
        self.fail_shutdown = fail_shutdown

    def initialize(self) -> None:
        self.log.append(f"initialize {self.plugin_type}")
        if self.fail_initialize:
            raise ConnectionError("service at example:1 refused the connection")

    def shutdown(self) -> None:
        self.log.append(f"shutdown {self.plugin_type}")
        if self.fail_shutdown:
            raise RuntimeError("shutdown exploded")

    def health_check(self) -> HealthReport:
        return True, {"status": "connected"}


class HangingPlugin(RecordingPlugin):
    """A plugin whose health check never answers until released."""

    def __init__(self, plugin_type: str = "datastream") -> None:
        super().__init__(plugin_type)
        self.release = threading.Event()

    def health_check(self) -> HealthReport:
        self.release.wait(30)
        return True, {"status": "late"}


class UnhealthyPlugin(RecordingPlugin):
    """A datastream plugin that keeps the contract and reports its broker down."""

    def __init__(self) -> None:
        super().__init__("datastream")

    def health_check(self) -> HealthReport:
        return False, {"status": "error", "message": "broker at example:5672 is down"}


class RaisingHealthPlugin(RecordingPlugin):
    """A plugin that breaks the contract: its health check raises."""

    def health_check(self) -> HealthReport:
        raise RuntimeError("boom")


class SecretPlugin(RecordingPlugin):
    """A plugin holding a password that must never leak."""

    def __init__(self, password: str = "s3cr3t-pw") -> None:
        super().__init__("datastream")
        self.password = password

    def health_check(self) -> HealthReport:
        return False, {
            "status": "error",
            "message": f"login failed: amqp://guest:{self.password}@host:5672/ ({self.password})",
            "password": self.password,
        }

    def initialize(self) -> None:
        raise ConnectionError(f"cannot log in with password {self.password}")


class NeedsToken:
    """A plugin with a required constructor argument."""

    plugin_type = "mlops"

    def __init__(self, token: str, retries: int = 3) -> None:
        self.token = token
        self.retries = retries

    def initialize(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def health_check(self) -> HealthReport:
        return True, {"status": "ok"}


class NotAPlugin:
    """Has no lifecycle methods."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class Severity(enum.Enum):
    """An enum a plugin of someone else's might take."""

    LOW = "low"
    HIGH = "high"


class Formatter:
    """A class YAML cannot write: only Python can pass one."""


class PagerPlugin:
    """A third-party-like plugin of a type observml does not know, with richer annotations."""

    plugin_type = "alerting"

    def __init__(
        self,
        channels: Sequence[str],
        template: Path | None = None,
        severity: Severity = Severity.LOW,
        formatter: Formatter | None = None,
        retries: Mapping[str, int] | None = None,
        hours: tuple[int, int] = (0, 24),
    ) -> None:
        self.channels = channels
        self.template = template
        self.severity = severity
        self.formatter = formatter
        self.retries = retries
        self.hours = hours

    def initialize(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def health_check(self) -> HealthReport:
        return True, {"status": "ok"}


class HalfTyped:
    """One annotation names a type imported only for type checkers; the rest still count."""

    plugin_type = "alerting"

    def __init__(self, clock: TypeCheckingOnly | None = None, port: int = 1) -> None:
        self.clock = clock
        self.port = port

    def initialize(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def health_check(self) -> HealthReport:
        return True, {"status": "ok"}
