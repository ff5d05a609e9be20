"""``observml serve``: the REST API and dashboard of a hub, with uvicorn."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Final

import click

from observml.cli.logs import cli_handlers, setup_logging
from observml.config import load_config
from observml.retraining.events import JsonFormatter

__all__ = ["LOG_FORMAT_ENV_VAR", "TEXT_FORMAT", "serve_command", "server_logging"]

logger = logging.getLogger(__name__)

#: Environment variable for ``--log-format``.
LOG_FORMAT_ENV_VAR: Final = "OBSERVML_LOG_FORMAT"
#: The line of ``--log-format text``.
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def server_logging(level: str, log_format: str) -> dict[str, Any] | None:
    """Show observml's log (events at INFO) in ``log_format``; return uvicorn's log config.

    The CLI's handler on the root logger is lowered to ``level`` (``global.log_level``), so
    the hub's events reach it; other libraries' loggers stay at WARNING. With ``json`` every
    line, uvicorn's access lines too, is one JSON object
    (:class:`~observml.retraining.events.JsonFormatter`); with ``text``, uvicorn keeps its own
    format (``None``: keep uvicorn's default config).
    """
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    # the console handler the CLI put there (not a test runner's or an application's own)
    handlers = cli_handlers() or [setup_logging(debug=False)]
    threshold = logging.getLevelName(level)
    for handler in handlers:
        if handler.level == logging.NOTSET or handler.level > threshold:
            handler.setLevel(threshold)
        handler.setFormatter(formatter)
    if log_format != "json":
        return None
    json_formatter = {"()": f"{JsonFormatter.__module__}.{JsonFormatter.__qualname__}"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": json_formatter},
        "handlers": {
            "json": {
                "formatter": "json",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }


@click.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Hub config (default $OBSERVML_CONFIG, ./hub_config.yaml, else embedded defaults).",
)
@click.option("--host", default=None, help="Address to bind (default api.host: 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8010).")
@click.option(
    "--token",
    envvar="OBSERVML_API_TOKEN",
    default=None,
    help="Bearer token every route but /livez requires (env OBSERVML_API_TOKEN).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="uvicorn's log level.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    envvar=LOG_FORMAT_ENV_VAR,
    default="text",
    show_default=True,
    help="text: one readable line per event; json: one JSON object per line (time, level,"
    f" logger, message and the event's fields). Env {LOG_FORMAT_ENV_VAR}.",
)
def serve_command(
    config_path: str | None,
    host: str | None,
    port: int | None,
    token: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Serve the REST API (docs at /docs) and the dashboard (at /) until Ctrl-C.

    Binding to an address other than loopback needs a token. Stopping the server stops the
    streams and training jobs and shuts the plugins down.
    """
    try:
        import uvicorn
        import uvicorn.config

        from observml.api import ApiSettings, create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the REST API needs fastapi and uvicorn ({exc.name} is missing):"
            " pip install 'observml[api]'"
        ) from exc
    from observml.hub.hub import ExperimentHub

    config = load_config(config_path)
    log_config = server_logging(config.global_.log_level, log_format)
    settings = ApiSettings.from_config(config.api, source=config.source)
    settings = replace(
        settings,
        host=host or settings.host,
        port=port or settings.port,
        token=token or settings.token,
    )
    settings.check_bind()
    hub = ExperimentHub.from_config(config_path)
    try:
        app = create_app(hub, settings=settings, owns_hub=True)
        auth = "token required" if settings.token else "no token"
        click.echo(
            f"observml API on {settings.url}"
            f" ({auth}); dashboard at /, docs at /docs. Ctrl-C stops.",
            err=True,
        )
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            log_config=log_config or uvicorn.config.LOGGING_CONFIG,
            timeout_graceful_shutdown=15,
            server_header=False,
        )
    finally:
        hub.shutdown()
