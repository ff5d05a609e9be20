"""Options the experiment commands share: the hub config, ``--url``/``--token``, ``--json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from observml.cli.client import TOKEN_ENV_VAR, URL_ENV_VAR

__all__ = ["hub_config_option", "json_option", "remote_options", "timeout_option"]

F = TypeVar("F", bound=Callable[..., Any])


def hub_config_option(*names: str) -> Callable[[F], F]:
    """``--config``/``--hub-config``: the hub config of the in-process hub."""
    return click.option(
        *names,
        "hub_config",
        type=click.Path(dir_okay=False),
        default=None,
        help="Hub config (default $OBSERVML_CONFIG, ./hub_config.yaml, else the embedded"
        " defaults under ./.observml).",
    )


def remote_options(func: F) -> F:
    """``--url`` and ``--token``: talk to a running server instead of an in-process hub."""
    func = click.option(
        "--token",
        envvar=TOKEN_ENV_VAR,
        default=None,
        help=f"Bearer token for --url (env {TOKEN_ENV_VAR}).",
    )(func)
    func = click.option(
        "--url",
        envvar=URL_ENV_VAR,
        default=None,
        help=f"Talk to a running 'observml serve' (e.g. http://127.0.0.1:8010; env"
        f" {URL_ENV_VAR}) instead of running the hub in this process.",
    )(func)
    return func


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds to wait for the job.",
)
