"""``run_demo``: the demo's hub, its scenario, and its report, in that order."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

from observml.demo.report import write_report
from observml.demo.scenario import Demo
from observml.demo.setup import PUMP, DemoOptions, demo_config
from observml.demo.summary import DemoReporter, DemoSummary, QuietReporter

__all__ = ["SAMPLE_FILE", "SAMPLE_ROWS", "run_demo"]

#: The CSV of pump rows the demo leaves in ``$OBSERVML_HOME/demo`` for ``observml send``.
SAMPLE_FILE: Final = "demo-pump-rows.csv"
SAMPLE_ROWS: Final = 50


def run_demo(options: DemoOptions, reporter: DemoReporter | None = None) -> DemoSummary:
    """Run the scenario on a hub built from the demo config; write the report; summarise.

    Raises:
        ObservMLError: A stage failed or timed out; the message says which and why.
    """
    from observml.config import HOME_ENV_VAR
    from observml.hub.hub import ExperimentHub

    started = time.perf_counter()
    say = reporter or QuietReporter()
    home = Path(os.environ.get(HOME_ENV_VAR) or ".observml").resolve()  # as the plugins do
    folder = home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "hub_config.yaml"
    config_file.write_text(demo_config(options), encoding="utf-8")
    where = "RabbitMQ" if options.datastream == "rabbitmq" else "the local queue"
    say.step(f"Starting a hub: MLflow under {_short(home)}, {where}")
    with ExperimentHub.from_config(config_file) as hub:
        demo = Demo(hub, options, say)
        outcomes = demo.run()
        sample = folder / SAMPLE_FILE
        # rows at the pump's new duty point, which its champion has learned is normal
        demo.data[PUMP].phases[2].head(SAMPLE_ROWS).to_csv(sample, index=False)
        say.step("Writing the report")
        summary = DemoSummary(
            experiments=outcomes,
            report=options.report.resolve(),
            hub_config=config_file,
            mlflow_db=home / "mlflow.db",
            datastream=options.datastream,
            story=list(demo.story),
            sample=sample,
        )
        write_report(hub, summary)
    config_file.write_text(demo_config(options, experiments=demo.active()), encoding="utf-8")
    summary.seconds = time.perf_counter() - started
    return summary


def _short(path: Path) -> str:
    try:
        return f"./{path.relative_to(Path.cwd().resolve())}"
    except ValueError:
        return str(path)
