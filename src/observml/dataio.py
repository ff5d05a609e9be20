"""Deprecated alias of :mod:`observml.io.rows` (the module's old path).

This alias keeps code written for the old path working, with a ``DeprecationWarning``; it goes
away in observml 0.2.
"""

from __future__ import annotations

import warnings

from observml.io.rows import *  # noqa: F403 - the moved module's public names
from observml.io.rows import __all__ as __all__

warnings.warn(
    "observml.dataio moved to observml.io.rows: import from there"
    " (the old path goes away in observml 0.2).",
    DeprecationWarning,
    stacklevel=2,
)
