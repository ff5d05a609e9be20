"""Dead letters of one experiment: counted by reason, the last few kept, each batch logged.

A message the hub cannot read or score goes to ``<name>.predict.dead`` with its reason in a
header. :class:`DeadLetterTally` keeps what ``status()`` shows about them: the total, the count
per reason, and the newest :data:`RECENT` with their reasons. Reasons are counted in a
normalised form (:func:`reason_key`: numbers become ``#``, message ids ``<id>``), so a row
number or a message id does not make every reason unique; at most :data:`MAX_REASONS` distinct
reasons are counted, the rest under :data:`OTHER`.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any, Final

from observml.retraining.events import emit

__all__ = ["MAX_REASONS", "OTHER", "RECENT", "DeadLetterTally", "reason_key"]

#: Dead letters kept with their reasons (newest first in ``status()``).
RECENT: Final = 10
#: Distinct (normalised) reasons counted; more are counted under :data:`OTHER`.
MAX_REASONS: Final = 50
OTHER: Final = "(other reasons)"
_KEY_CHARS: Final = 300
_HEX_ID = re.compile(r"\b[0-9a-fA-F]{16,}\b|\b[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}\b")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def reason_key(reason: str) -> str:
    """The reason as counted: ids become ``<id>``, numbers ``#``, cut to 300 characters."""
    text = _NUMBER.sub("#", _HEX_ID.sub("<id>", reason.strip()))
    return text[:_KEY_CHARS]


class DeadLetterTally:
    """Counts an experiment's dead letters by reason and keeps the newest (thread-safe).

    Args:
        name: The experiment.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._total = 0
        self._by_reason: Counter[str] = Counter()
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def add(
        self,
        dead: Mapping[int, str],
        message_ids: Sequence[str | None],
        *,
        queue: str,
        version: int | None,
    ) -> None:
        """Count the batch's dead letters (``{index: reason}``) and log one line per reason."""
        if not dead:
            return
        now = time.time()
        batch: Counter[str] = Counter()
        with self._lock:
            for index, reason in sorted(dead.items()):
                key = reason_key(reason)
                if key not in self._by_reason and len(self._by_reason) >= MAX_REASONS:
                    key = OTHER
                self._by_reason[key] += 1
                batch[key] += 1
                message_id = message_ids[index] if 0 <= index < len(message_ids) else None
                self._recent.append(
                    {"at": now, "message_id": message_id, "queue": queue, "reason": reason}
                )
            self._total += len(dead)
            total = self._total
        for key, count in batch.most_common():
            emit(
                "dead_letter",
                self.name,
                version,
                f"{count} message{'s' if count != 1 else ''}: {key} ({total} in all)",
                queue=queue,
                count=count,
                total=total,
                dead_reason=key,
            )

    def status(self) -> dict[str, Any]:
        """``total``, ``by_reason`` (most frequent first), ``recent`` (newest first), ``summary``.

        ``summary`` is one line, e.g. ``"50 dead letters: DataError: missing column 'x'"``
        (the most frequent reason), or ``None`` when there were none.
        """
        with self._lock:
            by_reason = dict(self._by_reason.most_common())
            recent = list(reversed(self._recent))
            total = self._total
        summary = None
        if total:
            top, count = next(iter(by_reason.items()))
            more = f" (+{len(by_reason) - 1} other reasons)" if len(by_reason) > 1 else ""
            share = "" if count == total else f" ({count} of them)"
            summary = f"{total} dead letter{'s' if total != 1 else ''}: {top}{share}{more}"
        return {"total": total, "by_reason": by_reason, "recent": recent, "summary": summary}
