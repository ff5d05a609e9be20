"""What the datastream fault tests share: the message bodies and the consumer's log.

A fault test publishes :func:`body` ``i`` for each message (every :data:`MALFORMED_EVERY`-th one
truncated JSON, which the consumer dead-letters), and a consumer process logs one line
``<message id> <redelivered 0|1>`` per handled message, read back with :func:`read_log`.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["MALFORMED_EVERY", "body", "is_malformed", "read_log"]

MALFORMED_EVERY = 100  # 1%


def is_malformed(i: int) -> bool:
    """Whether message ``i`` of a fault test is the truncated JSON the consumer refuses."""
    return i % MALFORMED_EVERY == MALFORMED_EVERY // 2


def body(i: int) -> str:
    """Message ``i``: a sensor reading, or truncated JSON when :func:`is_malformed`."""
    if is_malformed(i):
        return json.dumps({"i": i, "temp": 20.5})[:-8]  # truncated JSON
    return json.dumps({"i": i, "sensor": "pump-7", "temp": 20.5 + i % 7, "pad": "x" * 130})


def read_log(log: Path) -> list[tuple[str, bool]]:
    """Return ``(message id, redelivered)`` per complete line of the consumer's log."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line cut by SIGKILL is incomplete; its message comes back
            rows.append((parts[0], parts[1] == "1"))
    return rows
