"""A regular time grid: step numbers for timestamps and timestamps for step numbers.

Forecasting models work on values one step apart. :class:`TimeGrid` maps timestamps to the
step of a pandas frequency (``"min"``, ``"h"``, ``"D"``, ``"MS"``...) that contains them,
counted from an anchor, and back. Fixed-length frequencies use arithmetic; calendar ones
(months, weeks...) build the grid with :func:`pandas.date_range`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.tseries.frequencies import to_offset

__all__ = ["TimeGrid", "infer_freq"]

IntArray = npt.NDArray[np.int64]


def infer_freq(times: pd.DatetimeIndex) -> str | None:
    """Return the frequency of sorted unique ``times`` (pandas' rules, then the median gap).

    Returns None when fewer than two distinct timestamps are given.
    """
    unique = times.unique().sort_values()
    if len(unique) < 2:
        return None
    if len(unique) >= 3:
        try:
            with pd.option_context("future.infer_freq_returns_offset", True):
                found = pd.infer_freq(unique)
        except (KeyError, pd.errors.OptionError):  # pandas < 3 has no such option
            found = pd.infer_freq(unique)
        if found is not None:
            return str(to_offset(found).freqstr)
    gap = pd.Series(unique).diff().dropna().median()
    return str(to_offset(pd.Timedelta(gap)).freqstr)


@dataclass(frozen=True)
class TimeGrid:
    """Steps of ``freq`` counted from an anchor (step 0 is the anchor itself).

    Attributes:
        freq: A pandas frequency string.
    """

    freq: str

    @property
    def offset(self) -> pd.DateOffset:
        """The frequency as a pandas offset."""
        return to_offset(self.freq)

    @property
    def fixed(self) -> bool:
        """Whether every step has the same length (minutes, hours...)."""
        return isinstance(self.offset, pd.offsets.Tick)

    def align(self, time: pd.Timestamp) -> pd.Timestamp:
        """Return ``time`` or, for calendar frequencies, the grid point at or before it."""
        offset = self.offset
        if self.fixed or offset.is_on_offset(time):
            return time
        aligned: pd.Timestamp = offset.rollback(time)
        return aligned

    def steps(self, anchor: pd.Timestamp, times: pd.DatetimeIndex) -> IntArray:
        """Return the step of each of ``times`` relative to ``anchor`` (the one containing it).

        A step covers ``[t, t + freq)`` (pandas' resample bins): 09:59 is in the 09:00 step of
        ``"h"``.
        """
        if len(times) == 0:
            return np.zeros(0, dtype=np.int64)
        if self.fixed:
            ratio = np.asarray((times - anchor) / pd.Timedelta(self.offset), dtype="float64")
            result: IntArray = np.floor(ratio + 1e-9).astype(np.int64)
            return result
        offset = self.offset
        approx = (anchor + offset) - anchor  # one step, roughly (months differ in length)
        before = int(np.ceil(max(anchor - times.min(), pd.Timedelta(0)) / approx)) + 2
        after = int(np.ceil(max(times.max() - anchor, pd.Timedelta(0)) / approx)) + 2
        for _ in range(64):  # widen until the grid covers every time (a few rounds at most)
            grid = pd.date_range(anchor - before * offset, periods=before + after + 1, freq=offset)
            low, high = grid[0] > times.min(), grid[-1] <= times.max()
            if not (low or high):
                break
            before, after = before * 2 if low else before, after * 2 if high else after
        containing = grid.searchsorted(times, side="right") - 1
        result = (containing - before).astype(np.int64)
        return result

    def times(self, anchor: pd.Timestamp, steps: npt.ArrayLike) -> pd.DatetimeIndex:
        """Return the timestamps of ``steps`` relative to ``anchor``."""
        numbers = np.asarray(steps, dtype=np.int64)
        if numbers.size == 0:
            return pd.DatetimeIndex([], dtype=pd.DatetimeIndex([anchor]).dtype)
        if self.fixed:
            return pd.DatetimeIndex(anchor + numbers * pd.Timedelta(self.offset))
        low, high = int(numbers.min()), int(numbers.max())
        grid = pd.date_range(anchor + low * self.offset, periods=high - low + 1, freq=self.offset)
        return pd.DatetimeIndex(grid[numbers - low])
