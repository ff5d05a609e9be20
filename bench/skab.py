"""SKAB benchmark: experiment configs under SKAB's outlier-detection protocol, through the hub.

The same code as ``observml benchmark skab`` (see docs/benchmarks.md): for each of the 34
labelled files, train on the first 400 rows, predict the rest, pool the confusion counts; print
each config beside the published leaderboard.

Usage::

    python bench/skab.py PATH [--config FILE ...] [--json] [--report FILE]

``PATH`` is SKAB's ``data/`` folder (here ``../shared/datasets/skab``; GPL, never copied in).
Without ``--config`` it runs the configs shipped in ``observml/benchmarks/skab/configs``.
"""

from __future__ import annotations

import sys

from observml.cli import main

if __name__ == "__main__":
    main(["benchmark", "skab", *sys.argv[1:]])
