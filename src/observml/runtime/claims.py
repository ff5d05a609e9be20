"""The training claims a hub holds: with several hubs, one trains an experiment at a time.

Before a hub trains experiment ``pump`` it takes the claim ``train.pump`` from its datastream
plugin (:mod:`observml.plugins.claims`) and holds it until the job ends, however it ends. A
plugin without claims leaves only this hub's own jobs apart, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from observml.errors import ServiceUnavailableError
from observml.plugins.claims import Claim, SupportsClaims
from observml.plugins.datastream import DataStreamPlugin

__all__ = ["TrainingClaims", "training_claim_key"]

logger = logging.getLogger(__name__)


def training_claim_key(name: str) -> str:
    """The claim a hub holds while it trains experiment ``name``."""
    return f"train.{name}"


class TrainingClaims:
    """Takes and releases this hub's training claims, one per experiment.

    Args:
        datastream: Returns the hub's datastream plugin, or ``None`` when it has none.
    """

    def __init__(self, datastream: Callable[[], DataStreamPlugin | None]) -> None:
        self._datastream = datastream
        self._held: dict[str, Claim] = {}
        self._lock = threading.Lock()

    def take(self, name: str) -> bool:
        """Claim the training of ``name``; False when another job (of any hub) is training it.

        True without a claim when the datastream plugin has none, and when its service cannot
        be asked (logged): a training given its rows must not wait for the broker, and a hub
        alone needs no claim.
        """
        plugin = self._datastream()
        if not isinstance(plugin, SupportsClaims):
            return True
        with self._lock:
            if name in self._held:  # this hub's own job holds it
                return False
        try:
            claim = plugin.claim(training_claim_key(name))
        except ServiceUnavailableError as exc:
            logger.warning(
                "%s: training without the training claim: %s. Another hub process sharing the"
                " datastream may train it at the same time.",
                name,
                exc,
            )
            return True
        if claim is None:
            return False
        with self._lock:
            self._held[name] = claim
        return True

    def release(self, name: str) -> None:
        """Give the claim on ``name`` up, if this hub holds it. Never raises."""
        with self._lock:
            claim = self._held.pop(name, None)
        if claim is None:
            return
        try:
            claim.release()
        except Exception:  # the service is gone: so is the claim
            logger.warning("releasing the training claim of %r failed", name, exc_info=True)
