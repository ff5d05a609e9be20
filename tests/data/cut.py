"""Write the real data files of ``tests/data`` from the shared ObservML tables.

Run from the repository root: ``python tests/data/cut.py [SOURCE]``, SOURCE defaulting to
``../shared/datasets``. Lines are copied verbatim (no number is re-formatted), so running it
again leaves ``git diff`` empty. ``README.md`` beside this script says what each file is.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "datasets"

#: Copied whole: small enough as they are.
WHOLE = [
    *(f"detect_test_{i}.csv" for i in range(4)),
    "hmm_train.csv",
    "ten_est_detect.csv",
    "servo_long_format.json",
    *(f"time_series_test_{i}.csv" for i in range(4)),
    "electric_time_series.csv",
]
#: Hourly tables thinned to every 4th row (rows 0, 4, 8, ...): ``source -> target``.
EVERY_4TH = {
    **{f"pump_test_{i}.csv": f"pump_test_{i}_4h.csv" for i in range(4)},
    "detect_train.csv": "detect_train_4h.csv",
}
#: The minute series keeps its last rows, which the test files follow without a gap.
TAIL_ROWS = 6000
#: The event log keeps the columns the tests read.
EVENT_COLUMNS = ["Case ID", "Activity", "Start Timestamp", "Complete Timestamp"]


def every_4th(source: Path, target: Path) -> None:
    header, *rows = source.read_text(encoding="utf-8").splitlines(keepends=True)
    target.write_text(header + "".join(rows[::4]), encoding="utf-8")


def tail(source: Path, target: Path, n: int) -> None:
    header, *rows = source.read_text(encoding="utf-8").splitlines(keepends=True)
    target.write_text(header + "".join(rows[-n:]), encoding="utf-8")


def columns(source: Path, target: Path, names: list[str]) -> None:
    with source.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        keep = [header.index(name) for name in names]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([row[i] for i in keep] for row in reader)
    target.write_text(out.getvalue(), encoding="utf-8")


def main(source: Path) -> None:
    if not (source / "pump_test_0.csv").is_file():
        raise SystemExit(f"{source}: no ObservML tables here. Pass the shared datasets folder.")
    for name in WHOLE:
        shutil.copyfile(source / name, HERE / name)
    for name, target in EVERY_4TH.items():
        every_4th(source / name, HERE / target)
    tail(source / "time_series_train.csv", HERE / "time_series_train_tail.csv", TAIL_ROWS)
    columns(
        source / "production_event_log.csv", HERE / "production_event_log_4cols.csv", EVENT_COLUMNS
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE)
