"""A Mosquitto of the test's own on a free port, with persistence on, that tests may kill."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.services import free_port, port_open, service_missing

MOSQUITTO = os.environ.get("OBSERVML_TEST_MOSQUITTO", "/usr/sbin/mosquitto")


class Mosquitto:
    """A private broker: ``start()``, ``kill()`` (SIGKILL) or ``stop()`` (SIGTERM), ``start()``."""

    def __init__(self, folder: Path, extra: str = "") -> None:
        if not Path(MOSQUITTO).is_file():
            service_missing(f"no mosquitto binary at {MOSQUITTO}: apt-get install mosquitto")
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "user root\n"  # run as root (CI), it keeps reading this test's private files
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 100\n"
            f"log_dest file {folder}/mosquitto.log\n" + extra
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # it logs to mosquitto.log in its folder
        )
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", self.port, 0.2):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"mosquitto did not start; see {self.folder}/mosquitto.log")
            time.sleep(0.05)

    def halt(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        self.process = None
