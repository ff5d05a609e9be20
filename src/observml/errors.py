"""Every exception observml raises on purpose.

The tree (each class carries the HTTP status the REST API answers with)::

    ObservMLError                       500  base of everything raised on purpose
    ├── ConfigError                     422  .key, .source, .problems
    ├── PluginError                     500  .plugin_type, .name
    │   ├── UnknownPluginError          400  lists known names + closest match
    │   ├── PluginLoadError             500  chained from the import / entry-point failure
    │   ├── PluginInitError             500  initialize() raised
    │   └── PluginNotConfiguredError    503  the hub needs a plugin the config did not enable
    ├── ServiceUnavailableError         503  broker / tracking server unreachable after retries
    │   └── AuthenticationError         503  the service refused the credentials
    ├── NotFoundError                   404  a run, artifact, model version or queue is missing
    │   └── ExperimentNotFoundError     404  (also an ExperimentError) no experiment of that name
    ├── DataError                       422  input data does not fit (names the column)
    ├── UnauthorizedError               401  the REST API needs a bearer token (api.token)
    ├── ForbiddenError                  403  a cookie-signed-in request came from another origin
    ├── PayloadTooLargeError            413  a request body over api.max_body_bytes
    └── ExperimentError                 409
        ├── ExperimentNotFoundError     404  (also a NotFoundError, above)
        ├── ExperimentExistsError       409
        ├── ModelNotTrainedError        409  "Call train() first"
        ├── TrainingInProgressError     409
        └── UntrustedModelError         409  a stored model is unsigned, altered or foreign

Messages read ``<where>: <what is wrong>. <what to do>.`` and never contain a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConfigProblem",
    "DataError",
    "ExperimentError",
    "ExperimentExistsError",
    "ExperimentNotFoundError",
    "ForbiddenError",
    "ModelNotTrainedError",
    "NotFoundError",
    "ObservMLError",
    "PayloadTooLargeError",
    "PluginError",
    "PluginInitError",
    "PluginLoadError",
    "PluginNotConfiguredError",
    "ServiceUnavailableError",
    "TrainingInProgressError",
    "UnauthorizedError",
    "UnknownPluginError",
    "UntrustedModelError",
]


class ObservMLError(Exception):
    """Base of every error observml raises on purpose."""

    http_status: ClassVar[int] = 500


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a configuration: where (``key``) and what (``message``)."""

    key: str
    message: str

    def render(self, source: str | None) -> str:
        """Return ``<source>: <key>: <message>``, leaving out the parts that are unknown."""
        parts = [p for p in (source, self.key) if p]
        return ": ".join([*parts, self.message])


class ConfigError(ObservMLError):
    """The configuration is invalid; ``problems`` lists every issue found, each with its key."""

    http_status = 422

    def __init__(
        self,
        message: str | None = None,
        *,
        key: str = "",
        source: str | None = None,
        problems: list[ConfigProblem] | None = None,
    ) -> None:
        if problems is None:
            problems = [ConfigProblem(key, message or "invalid configuration")]
        self.problems = problems
        self.key = problems[0].key if problems else key
        self.source = source
        super().__init__("\n".join(p.render(source) for p in problems))


class PluginError(ObservMLError):
    """A plugin could not be found, loaded or started."""

    def __init__(self, message: str, *, plugin_type: str = "", name: str = "") -> None:
        super().__init__(message)
        self.plugin_type = plugin_type
        self.name = name


class UnknownPluginError(PluginError):
    """No plugin of that name is known for the plugin type."""

    http_status = 400


class PluginLoadError(PluginError):
    """The plugin's module or entry point failed to import."""


class PluginInitError(PluginError):
    """The plugin's ``initialize()`` raised."""


class PluginNotConfiguredError(PluginError):
    """The hub needs a plugin type the configuration did not enable."""

    http_status = 503


class ServiceUnavailableError(ObservMLError):
    """An external service (broker, tracking server) cannot be reached."""

    http_status = 503


class AuthenticationError(ServiceUnavailableError):
    """The external service refused the credentials; retrying will not help."""


class NotFoundError(ObservMLError):
    """A run, artifact, model version or queue does not exist."""

    http_status = 404


class DataError(ObservMLError):
    """Input data does not have the shape or types expected."""

    http_status = 422


class UnauthorizedError(ObservMLError):
    """The REST API request has no bearer token, or the wrong one."""

    http_status = 401


class ForbiddenError(ObservMLError):
    """The REST API refuses a request whose credentials are valid (e.g. a cross-site POST)."""

    http_status = 403


class PayloadTooLargeError(ObservMLError):
    """The REST API request body is larger than ``api.max_body_bytes``."""

    http_status = 413


class ExperimentError(ObservMLError):
    """An experiment cannot do what was asked in its current state."""

    http_status = 409


class ExperimentNotFoundError(NotFoundError, ExperimentError):
    """No experiment of that name exists in the hub (``except NotFoundError`` catches it)."""

    http_status = 404


class ExperimentExistsError(ExperimentError):
    """An experiment of that name already exists."""


class ModelNotTrainedError(ExperimentError):
    """The experiment has no trained model yet."""


class TrainingInProgressError(ExperimentError):
    """A training job for the experiment is already running."""


class UntrustedModelError(ExperimentError):
    """A stored model folder is unsigned, was altered, or was signed by another hub key."""
