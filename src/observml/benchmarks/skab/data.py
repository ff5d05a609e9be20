"""Reading a SKAB ``data/`` folder: the 34 labelled experiments (never the anomaly-free file).

SKAB is GPL-3.0: observml ships none of it; every function takes the folder as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from observml.errors import DataError

__all__ = ["GROUPS", "LABEL", "SENSORS", "TIME", "SkabFile", "load_skab"]

#: The labelled folders, in the order the leaderboard's loader reads them.
GROUPS: Final = ("valve1", "valve2", "other")
#: The index column (1 s sampling).
TIME: Final = "datetime"
#: Row labels: ``anomaly`` (the outlier track) and ``changepoint`` (the changepoint track).
LABEL: Final = "anomaly"
CHANGEPOINT: Final = "changepoint"
SENSORS: Final = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)


@dataclass(frozen=True)
class SkabFile:
    """One labelled experiment: ``name`` (``valve1/0``) and its rows in time order."""

    name: str
    frame: pd.DataFrame

    @property
    def sensors(self) -> pd.DataFrame:
        """``datetime`` and the eight sensors: what the experiment sees (no labels)."""
        return self.frame[[TIME, *SENSORS]]

    @property
    def anomaly(self) -> pd.Series:
        """The ``anomaly`` label as booleans."""
        return self.frame[LABEL].astype(bool)

    @property
    def changepoints(self) -> pd.Series:
        """The ``changepoint`` label as booleans."""
        return self.frame[CHANGEPOINT].astype(bool)


def load_skab(path: str | Path) -> list[SkabFile]:
    """Return the labelled files of the SKAB folder ``path``, ``valve1``, ``valve2``, ``other``.

    Files are numbered; they come in numeric order within each folder.

    Raises:
        DataError: ``path`` is not a SKAB data folder, or a file lacks a column.
    """
    root = Path(path)
    missing = [g for g in GROUPS if not (root / g).is_dir()]
    if missing:
        raise DataError(
            f"{root}: not a SKAB data folder (no {', '.join(missing)} folder). Give the folder"
            " holding valve1/, valve2/ and other/ (SKAB's data/ folder)."
        )
    files: list[SkabFile] = []
    for group in GROUPS:
        paths = sorted((root / group).glob("*.csv"), key=_numeric_stem)
        for csv in paths:
            files.append(SkabFile(f"{group}/{csv.stem}", _read(csv)))
    if not files:
        raise DataError(f"{root}: the SKAB folders hold no .csv files.")
    return files


def _numeric_stem(path: Path) -> tuple[int, str]:
    stem = path.stem
    return (int(stem), stem) if stem.isdigit() else (1 << 30, stem)


def _read(csv: Path) -> pd.DataFrame:
    frame = pd.read_csv(csv, sep=";")
    needed = [TIME, *SENSORS, LABEL, CHANGEPOINT]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise DataError(
            f"{csv}: missing column(s) {', '.join(absent)}. A SKAB file has ';'-separated"
            f" columns {', '.join(needed)}."
        )
    frame[TIME] = pd.to_datetime(frame[TIME])
    return frame
