"""The ``observml`` command. Thin: every command calls the hub, the config or the registry.

Commands live in one module per concern (``core``: plugins, config, health; ``serve``; the
experiment commands; ``demo``) and are attached to the group here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from observml.cli.logs import setup_logging
from observml.errors import ConfigError, ObservMLError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug",
    is_flag=True,
    help="Show tracebacks, debug logs and the logs and progress bars of MLflow, pika, ...",
)
@click.version_option(package_name="observml")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """observml: train, stream, track and retrain process-monitoring models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    setup_logging(debug)


def _attach() -> None:
    from observml.cli import benchmark, core, decisions, demo, events, experiments, send, serve

    cli.add_command(core.plugins_command)
    cli.add_command(core.config_group)
    cli.add_command(core.health_command)
    cli.add_command(serve.serve_command)
    cli.add_command(send.send_command)
    cli.add_command(experiments.train_command)
    cli.add_command(experiments.predict_command)
    cli.add_command(experiments.status_command)
    cli.add_command(experiments.retrain_command)
    cli.add_command(experiments.rollback_command)
    cli.add_command(decisions.promote_command)
    cli.add_command(decisions.reject_command)
    cli.add_command(decisions.feedback_command)
    cli.add_command(events.decisions_command)
    cli.add_command(events.tail_command)
    cli.add_command(demo.demo_command)
    cli.add_command(benchmark.benchmark_group)


_attach()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; print observml errors as one message (exit 2 for config errors, else 1)."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="observml",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except ObservMLError as exc:
        if debug:
            raise
        if isinstance(exc, ConfigError):
            lines = [p.render(exc.source) for p in exc.problems]
        else:
            lines = [str(exc)]
        for line in lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
