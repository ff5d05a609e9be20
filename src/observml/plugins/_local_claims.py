"""The local datastream's claims: an advisory lock on a file beside the queue file.

A claim ``key`` is ``flock(LOCK_EX | LOCK_NB)`` on ``<queues folder>/claims/<key>.lock``. The
kernel gives the lock up when its holder closes the file or exits, however it exits, so a hub
that dies while training never blocks the next one. The file holds the holder's process id and
host, for people looking; the lock, not the text, is the claim. The file is opened close-on-exec,
so the hub's job children do not inherit the lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from observml.plugins.claims import check_claim_key

__all__ = ["FileClaim", "take_claim"]


class FileClaim:
    """A claim held as a lock on an open file until :meth:`release`."""

    def __init__(
        self, key: str, fd: int, on_release: Callable[[FileClaim], None] | None = None
    ) -> None:
        self.key = key
        self._fd: int | None = fd
        self._lock = threading.Lock()
        self._on_release = on_release

    def release(self) -> None:
        """Close the file, which drops the lock. Safe to call twice."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            if self._on_release is not None:
                self._on_release(self)

    def __repr__(self) -> str:
        return f"FileClaim({self.key!r}, held={self._fd is not None})"


def take_claim(
    folder: Path, key: str, on_release: Callable[[FileClaim], None] | None = None
) -> FileClaim | None:
    """Lock ``folder/claims/<key>.lock`` without waiting; ``None`` if another holder has it.

    ``on_release`` is called with the claim once it is released.
    """
    check_claim_key(key)
    claims = folder / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    fd = os.open(claims / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    return FileClaim(key, fd, on_release)
