"""Claims: a name that one process at a time holds, among all the processes sharing a service.

Several hub processes may serve the same experiments (docs/deploy.md). They share the streams
as competing consumers, but a training must run once: before a hub trains experiment ``pump``
(a ``train`` request, a requested ``retrain`` or one its retrain policy fired) it takes the
claim ``train.pump`` from its datastream plugin and holds it until the job ends. A hub that
finds the claim taken does not train: a request gets ``TrainingInProgressError`` (HTTP 409), a
fired policy records a ``skipped`` decision.

A datastream plugin offers claims by having a ``claim`` method (:class:`SupportsClaims`); it is
optional, and a hub whose plugin has none only keeps its own jobs apart. What a claim rests on
is the plugin's to choose, but it must be given up when its holder dies, without anyone's help:

- ``rabbitmq``: an exclusive queue ``observml.claim.<key>`` on the plugin's claims connection;
  the broker deletes it when the connection closes or misses its heartbeats.
- ``local``: an advisory lock (``flock``) on ``<queues folder>/claims/<key>.lock``; the kernel
  drops it when the process exits.
- ``memory``: a set on the plugin instance (hubs in one process sharing the instance).

A claim can be lost while held (the broker restarted under it). The job goes on, and for a
moment another hub may take the claim too; the decisions that follow a training tell both
apart (a second challenger supersedes the first; see docs/deploy.md).
"""

from __future__ import annotations

import re
from typing import Final, Protocol, runtime_checkable

from observml.errors import ConfigError

__all__ = ["Claim", "SupportsClaims", "check_claim_key"]

_KEY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}\Z")


class Claim(Protocol):
    """A claim this process holds until :meth:`release` (or until it dies)."""

    @property
    def key(self) -> str:
        """The claimed name."""
        ...

    def release(self) -> None:
        """Give the claim up. Safe to call twice, and when the service is gone."""
        ...


@runtime_checkable
class SupportsClaims(Protocol):
    """A datastream plugin that can grant claims shared by every process using its service."""

    def claim(self, key: str) -> Claim | None:
        """Take the claim ``key`` now, without waiting; ``None`` when another holder has it.

        Raises:
            ConfigError: ``key`` is not a valid claim name (see :func:`check_claim_key`).
            ServiceUnavailableError: The service could not be asked.
        """
        ...


def check_claim_key(key: str) -> str:
    """Return ``key`` if it can name a claim: 1-200 letters, digits, ``_``, ``.`` or ``-``.

    Raises:
        ConfigError: Says which characters a key may hold.
    """
    if not isinstance(key, str) or not _KEY.match(key):
        raise ConfigError(
            f"claim key {key!r}: use 1-200 letters, digits, '_', '.' or '-',"
            " starting with a letter or digit."
        )
    return key
