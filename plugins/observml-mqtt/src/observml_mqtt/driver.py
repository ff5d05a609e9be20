"""One thread that reads, writes and reconnects many sessions' connections.

The plugin keeps one MQTT connection per queue (MQTT's flow control, the order of PUBACKs and
the persistent session are all per connection), but not a thread per connection: its shared
:class:`Driver` polls every :class:`~observml_mqtt.link.Link`'s socket, hands what arrives to
paho (whose callbacks run here), writes what waits, keeps each connection alive and reconnects
the lost ones. A ``consume`` call borrows its session's link into a driver of its own for as
long as it runs, so its handler (called on the network thread, as a plain paho consumer does)
never holds up the other sessions.

``tend`` (the plugin's subscriptions) runs once per turn on the driver's thread, after the
sockets were served; it returns how soon it wants the next turn, and :meth:`Driver.wake` (any
thread) brings that turn forward.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable

from observml_mqtt.link import Link

__all__ = ["Driver"]

logger = logging.getLogger(__name__)

_IDLE = 1.0  # longest wait between turns: keepalive pings and reconnects are timed in seconds
_TEND = 0.05  # most often the links are tended (keepalive, reconnect) while data flows
_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class Driver:
    """Drives the links it holds on one thread (see the module docstring).

    The thread starts with the first :meth:`adopt` and ends at :meth:`stop`.

    Args:
        name: The thread's name.
        tend: Run once per turn on the thread; returns seconds until it is due again
            (``None``: when woken).
    """

    def __init__(self, name: str, tend: Callable[[], float | None] | None = None) -> None:
        self._name = name
        self._tend = tend
        self._lock = threading.Lock()
        self._changes: list[tuple[Link, bool, threading.Event]] = []  # (link, adopt?, done)
        self._links: list[Link] = []  # the thread's own
        self._thread: threading.Thread | None = None
        self._ident: int | None = None  # the thread's, so its own packets do not wake it
        self._stopping = False
        self._woken = False
        self._tend_links_at = 0.0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def adopt(self, link: Link) -> None:
        """Start driving ``link`` (connected by its :meth:`Link.open`)."""
        link.attach(self.wake)
        with self._lock:
            if self._stopping:
                raise RuntimeError(f"{self._name} is stopped")
            self._changes.append((link, True, threading.Event()))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self.wake()

    def release(self, link: Link) -> None:
        """Stop driving ``link``; returns once this thread no longer touches it."""
        done = threading.Event()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._links = [k for k in self._links if k is not link]
                return
            on_thread = threading.current_thread() is self._thread
            self._changes.append((link, False, done))
        if on_thread:
            self._apply_changes()
            return
        self.wake()
        done.wait()

    def wake(self) -> None:
        """Make the thread take a turn now (thread-safe, cheap when a turn is coming anyway)."""
        if self._woken or threading.get_ident() == self._ident:
            return  # a turn is coming; or this is the thread, which looks at every link anyway
        self._woken = True
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def stop(self) -> None:
        """End the thread (the links it still holds are left as they are) and close its pipe."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def links(self) -> int:
        """How many links the thread drives."""
        return len(self._links)

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        self._ident = threading.get_ident()
        try:
            while not self._stopping:
                self._turn()
        except Exception:  # a bug: say so loudly; the links' sessions report being down
            logger.exception("%s: the MQTT driver failed", self._name)
        finally:
            with self._lock:
                left, self._changes = self._changes, []
            for _, _, done in left:
                done.set()

    def _turn(self) -> None:
        self._apply_changes()
        now = time.monotonic()
        timeout = _IDLE
        if now >= self._tend_links_at:  # keepalive and reconnects count in tenths of seconds
            for link in self._links:
                timeout = min(timeout, link.tend(now))
            self._tend_links_at = now + min(max(timeout, 0.0), _TEND)
        else:
            timeout = self._tend_links_at - now
        if self._tend is not None:
            due = self._tend()
            if due is not None:
                timeout = min(timeout, due)
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        watched: dict[int, Link] = {}
        for link in self._links:
            sock = link.socket()
            if sock is None:
                continue
            if link.pending():
                timeout = 0.0
            fd = sock.fileno()
            watched[fd] = link
            poller.register(fd, _READ | (select.POLLOUT if link.want_write() else 0))
        self._woken = False
        events = poller.poll(max(timeout, 0.0) * 1000)
        for fd, event in events:
            if fd == self._wake_r.fileno():
                with contextlib.suppress(BlockingIOError, OSError):
                    self._wake_r.recv(4096)
                continue
            link = watched[fd]
            if event & select.POLLOUT and link.socket() is not None:
                link.write()
            if event & _READ and link.socket() is not None:
                link.read()
        for link in self._links:  # TLS may hold decrypted bytes poll() will not report
            if link.pending():
                link.read()

    def _apply_changes(self) -> None:
        with self._lock:
            changes, self._changes = self._changes, []
        for link, adopt, done in changes:
            if adopt:
                if link not in self._links:
                    self._links.append(link)
            else:
                self._links = [k for k in self._links if k is not link]
            done.set()
