"""A hub's experiments a page at a time, and the counts of its one-line summary.

With hundreds of experiments on one hub, ``observml status``, ``GET /experiments`` and the
dashboard show one page of the list and a line of counts (how many are in each state, of each
type, streaming, with an open alert, with a challenger in shadow) instead of every experiment.

Both read :meth:`ExperimentHub.status <observml.hub.hub.ExperimentHub.status>`, in one pass over
the experiments. A page without a state or type filter reads only the statuses it shows; a
filter reads each experiment's status once. States are counted as the status names them, so a
state the hub adds later (``queued``) is counted without a change here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from observml.errors import DataError, ExperimentNotFoundError

if TYPE_CHECKING:
    from observml.hub.hub import ExperimentHub

__all__ = [
    "MAX_PAGE",
    "ExperimentFilter",
    "ExperimentPage",
    "check_page",
    "count",
    "page",
    "summarize",
]

#: The most experiments one page may hold (``limit``); no limit means all of them.
MAX_PAGE: Final = 1000


@dataclass(frozen=True)
class ExperimentFilter:
    """Which experiments a page lists; ``None`` matches every one.

    Attributes:
        state: The state exactly as the status names it (``ready``, ``untrained``,
            ``running``, ``queued``, ``failed``, ...).
        experiment_type: The experiment type (``fault_detection``, ...).
        name: Text the name contains, ignoring case.
    """

    state: str | None = None
    experiment_type: str | None = None
    name: str | None = None

    def names(self, names: Iterable[str]) -> list[str]:
        """The names that pass the name filter, in order."""
        if not self.name:
            return list(names)
        wanted = self.name.casefold()
        return [n for n in names if wanted in n.casefold()]

    @property
    def reads_status(self) -> bool:
        """Whether the filter needs each experiment's status (a state or type filter)."""
        return self.state is not None or self.experiment_type is not None

    def matches(self, status: Mapping[str, Any]) -> bool:
        """Whether an experiment's status passes the state and type filters."""
        return (self.state is None or status.get("state") == self.state) and (
            self.experiment_type is None or status.get("type") == self.experiment_type
        )


@dataclass(frozen=True)
class ExperimentPage:
    """One page of the experiment list.

    Attributes:
        statuses: The experiments' statuses, sorted by name.
        offset: Experiments skipped before this page.
        limit: The most the page may hold; ``None``: no limit.
        total: How many experiments pass the filter, on every page.
    """

    statuses: list[dict[str, Any]] = field(default_factory=list)
    offset: int = 0
    limit: int | None = None
    total: int = 0


def check_page(offset: int, limit: int | None) -> None:
    """Raise unless ``offset``/``limit`` select a page of the experiment list.

    Raises:
        DataError: ``offset`` is negative, or ``limit`` is not 1 to :data:`MAX_PAGE`.
    """
    if offset < 0 or (limit is not None and not 1 <= limit <= MAX_PAGE):
        raise DataError(
            f"experiments: offset {offset}, limit {limit}: use an offset of 0 or more and a"
            f" limit of 1 to {MAX_PAGE} (or no limit for all of them)."
        )


def page(
    hub: ExperimentHub,
    *,
    offset: int = 0,
    limit: int | None = None,
    where: ExperimentFilter | None = None,
) -> ExperimentPage:
    """Return the statuses of ``limit`` experiments from ``offset``, sorted by name.

    Args:
        hub: The hub whose experiments to list.
        offset: Experiments to skip (0 or more).
        limit: The most to return (1 to :data:`MAX_PAGE`); ``None``: all from ``offset``.
        where: Which experiments to list; ``None``: all.

    Raises:
        DataError: ``offset`` or ``limit`` is out of range.
    """
    check_page(offset, limit)
    where = where or ExperimentFilter()
    names = where.names(hub.experiments())
    end = None if limit is None else offset + limit
    if where.reads_status:
        found = [s for s in _statuses(hub, names) if where.matches(s)]
        return ExperimentPage(found[offset:end], offset, limit, len(found))
    # without a status filter, the total is the number of names: read only the page's
    return ExperimentPage(list(_statuses(hub, names[offset:end])), offset, limit, len(names))


def summarize(hub: ExperimentHub) -> dict[str, Any]:
    """Count the hub's experiments: in each state, of each type, streaming, alerts, shadows.

    Returns:
        ``{"total", "by_state", "by_type", "streaming", "open_alerts", "in_shadow"}``; the
        ``by_`` counts are ordered most frequent first, then by name.
    """
    return count(_statuses(hub, hub.experiments()))


def count(statuses: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Count experiments by their statuses (see :func:`summarize`)."""
    states: Counter[str] = Counter()
    types: Counter[str] = Counter()
    streaming = alerts = shadows = total = 0
    for status in statuses:
        total += 1
        states[str(status.get("state"))] += 1
        types[str(status.get("type"))] += 1
        streaming += bool(status.get("streaming"))
        alerts += (status.get("alerts") or {}).get("open") is not None
        shadows += status.get("challenger_version") is not None
    return {
        "total": total,
        "by_state": _ordered(states),
        "by_type": _ordered(types),
        "streaming": streaming,
        "open_alerts": alerts,
        "in_shadow": shadows,
    }


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _statuses(hub: ExperimentHub, names: Iterable[str]) -> Iterable[dict[str, Any]]:
    for name in names:
        try:
            yield hub.status(name)
        except ExperimentNotFoundError:  # deleted while listing
            continue
