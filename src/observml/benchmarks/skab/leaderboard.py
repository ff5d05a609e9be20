"""SKAB's published outlier-detection leaderboard (F1, FAR %, MAR %, NAB standard score)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["LEADERBOARD", "LeaderboardRow"]


@dataclass(frozen=True)
class LeaderboardRow:
    """One published method: F1, FAR and MAR in %, and its NAB standard score if published."""

    method: str
    f1: float
    far: float
    mar: float
    nab: float | None = None


#: The SKAB README's table (outlier track) with the changepoint track's NAB where given.
LEADERBOARD: Final[tuple[LeaderboardRow, ...]] = (
    LeaderboardRow("Conv-AE", 0.78, 13.55, 28.02, 23.61),
    LeaderboardRow("MSET", 0.78, 39.73, 14.13),
    LeaderboardRow("T²+Q (PCA)", 0.76, 26.62, 24.92, 25.35),
    LeaderboardRow("LSTM-AE", 0.74, 29.96, 25.92, 23.51),
    LeaderboardRow("T² (PCA)", 0.66, 19.21, 42.60, 19.54),
    LeaderboardRow("LSTM-VAE", 0.56, 9.13, 55.03),
    LeaderboardRow("Vanilla LSTM", 0.54, 12.54, 59.53),
    LeaderboardRow("Vanilla AE", 0.39, 2.59, 75.15),
    LeaderboardRow("MSCRED", 0.36, 49.94, 69.88, 32.42),
    LeaderboardRow("Isolation forest", 0.29, 2.56, 82.89, 26.16),
)
