"""The ``api:`` section of ``hub_config.yaml``: where the REST service binds and who may call it.

Shape, with the defaults::

    api:
      host: 127.0.0.1          # loopback only; another address needs a token
      port: 8010
      token: ${OBSERVML_API_TOKEN:-}   # bearer token; $OBSERVML_API_TOKEN wins when set
      max_body_bytes: 10485760 # 10 MiB; larger request bodies get 413
      cors_origins: []         # browser origins allowed to call the API; [] = CORS off
      session_max_age: 28800   # seconds a browser's sign-in lasts: 8 hours, a shift
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from observml.config.validation import check_arguments
from observml.errors import ConfigError, ConfigProblem

__all__ = ["API_TOKEN_ENV_VAR", "DEFAULT_SESSION_MAX_AGE", "ApiSettings", "is_loopback"]

#: Bearer token of the REST API; wins over ``api.token`` in the config file.
API_TOKEN_ENV_VAR: Final = "OBSERVML_API_TOKEN"
#: How long a browser's sign-in lasts by default (``api.session_max_age``): a shift, in seconds.
DEFAULT_SESSION_MAX_AGE: Final = 8 * 60 * 60


@dataclass(frozen=True)
class ApiSettings:
    """How the REST API is served.

    Args:
        host: The address ``observml serve`` binds to.
        port: The TCP port.
        token: The bearer token every route but ``/livez`` requires; ``None`` = no auth.
        max_body_bytes: The largest request body accepted (413 above it).
        cors_origins: Origins allowed to call the API from a browser; empty = CORS off.
        session_max_age: Seconds a browser's session cookie is accepted after sign-in (using
            the API does not extend it).
    """

    host: str = "127.0.0.1"
    port: int = 8010
    token: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    session_max_age: int = DEFAULT_SESSION_MAX_AGE

    @classmethod
    def from_config(
        cls, raw: Mapping[str, Any] | None, *, source: str | None = None
    ) -> ApiSettings:
        """Validate the ``api:`` mapping; ``$OBSERVML_API_TOKEN`` overrides ``token``.

        Raises:
            ConfigError: Unknown keys or bad values, every problem listed with its key.
        """
        problems: list[ConfigProblem] = []
        settings = cls.check(raw, problems)
        if problems:
            raise ConfigError(source=source, problems=problems)
        env_token = os.environ.get(API_TOKEN_ENV_VAR)
        if env_token:
            settings = replace(settings, token=env_token)
        elif not settings.token:
            settings = replace(settings, token=None)
        return settings

    @property
    def url(self) -> str:
        """The base URL the API answers on (an IPv6 address in brackets)."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @classmethod
    def check(cls, raw: Mapping[str, Any] | None, problems: list[ConfigProblem]) -> ApiSettings:
        """Validate the ``api:`` mapping, appending what is wrong to ``problems``.

        :mod:`observml.config.section_reader` calls this while the file is read, so a bad ``api:``
        section is reported with the rest (``observml config check``), without importing fastapi.

        Returns:
            The settings from the valid values (defaults where a value is wrong).
        """
        values = check_arguments(cls, dict(raw or {}), "api", problems)
        if "cors_origins" in values:
            origins = values["cors_origins"]
            if not all(isinstance(o, str) and o for o in origins):
                problems.append(
                    ConfigProblem(
                        "api.cors_origins",
                        "expected a list of origins such as 'http://localhost:3000'.",
                    )
                )
            values["cors_origins"] = tuple(str(o) for o in origins)
        settings = cls(**values)
        problems.extend(settings.problems())
        return settings

    def problems(self) -> list[ConfigProblem]:
        """Return what is wrong with the values (empty when they are fine)."""
        found = []
        if not 0 < self.port < 65536:
            found.append(ConfigProblem("api.port", f"expected 1-65535, got {self.port}."))
        if self.max_body_bytes < 1024:
            found.append(
                ConfigProblem(
                    "api.max_body_bytes",
                    f"expected at least 1024 bytes, got {self.max_body_bytes}.",
                )
            )
        if self.session_max_age < 60:
            found.append(
                ConfigProblem(
                    "api.session_max_age",
                    f"expected at least 60 seconds, got {self.session_max_age}. The default is"
                    f" {DEFAULT_SESSION_MAX_AGE} (8 hours, a shift).",
                )
            )
        if not self.host.strip():
            found.append(ConfigProblem("api.host", "empty. Use 127.0.0.1 or an interface address."))
        return found

    def check_bind(self) -> None:
        """Refuse to expose the API beyond this machine without a token.

        Raises:
            ConfigError: ``host`` is not a loopback address and no token is set.
        """
        if self.token or is_loopback(self.host):
            return
        raise ConfigError(
            f"binding the API to {self.host} without a token would let anyone who can reach"
            " this machine train, delete and read experiments. Set a bearer token (api.token in"
            f" hub_config.yaml, ${API_TOKEN_ENV_VAR}, or 'observml serve --token'), or bind to"
            " 127.0.0.1 and put an authenticating proxy in front.",
            key="api.host",
        )


def is_loopback(host: str) -> bool:
    """Return whether ``host`` only accepts connections from this machine."""
    if host.strip().lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False
