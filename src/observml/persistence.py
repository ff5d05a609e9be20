"""Deprecated alias of :mod:`observml.store.artifacts` (the module's old path).

This alias keeps code written for the old path working, with a ``DeprecationWarning``; it goes
away in observml 0.2.
"""

from __future__ import annotations

import warnings

from observml.store.artifacts import *  # noqa: F403 - the moved module's public names
from observml.store.artifacts import __all__ as __all__

warnings.warn(
    "observml.persistence moved to observml.store.artifacts: import from there"
    " (the old path goes away in observml 0.2).",
    DeprecationWarning,
    stacklevel=2,
)
