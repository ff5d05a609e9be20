"""A hub process for the end-to-end tests: ``python -m tests.integration.hub_worker CONFIG``.

Starts the hub from the config (restoring champions and resuming streaming), prints one JSON
line ``{"ready": true, "champions": {...}}`` and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from observml import ExperimentHub


def main(config_path: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with ExperimentHub.from_config(config_path) as hub:
        champions = {name: hub.status(name)["champion_version"] for name in hub.experiments()}
        print(json.dumps({"ready": True, "champions": champions}), flush=True)
        stop.wait()


if __name__ == "__main__":
    main(sys.argv[1])
