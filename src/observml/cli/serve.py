"""``observml serve``: the REST API and dashboard of a hub, with uvicorn."""

from __future__ import annotations

import logging
from dataclasses import replace

import click

from observml.config import load_config

__all__ = ["serve_command"]

logger = logging.getLogger(__name__)


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
def serve_command(
    config_path: str | None,
    host: str | None,
    port: int | None,
    token: str | None,
    log_level: str,
) -> None:
    """Serve the REST API (docs at /docs) and the dashboard (at /) until Ctrl-C.

    Binding to an address other than loopback needs a token. Stopping the server stops the
    streams and training jobs and shuts the plugins down.
    """
    try:
        import uvicorn

        from observml.api import ApiSettings, create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the REST API needs fastapi and uvicorn ({exc.name} is missing):"
            " pip install 'observml[api]'"
        ) from exc
    from observml.hub.hub import ExperimentHub

    config = load_config(config_path)
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
            timeout_graceful_shutdown=15,
            server_header=False,
        )
    finally:
        hub.shutdown()
