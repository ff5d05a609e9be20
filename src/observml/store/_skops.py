"""Import ``skops.io`` without it importing PyTorch.

On import, skops lists every scikit-learn estimator with ``sklearn.utils.all_estimators()``,
which walks all of scikit-learn's packages and so imports
``sklearn.externals.array_api_compat.torch``, which imports ``torch`` when it is installed (the
``deep`` extra): every process that reads or writes a model file would load PyTorch, about
300 MB and seconds of CPU, for models that never use it (and loky restarts a warm job child
that grew that much). :func:`skops_io` imports skops with ``torch`` hidden from that walk only:
an import of ``torch`` from any other caller, in this thread or another, goes through. The
walk ignores packages that fail to import, and a model that needs PyTorch imports it itself.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import FrameType, ModuleType
from typing import Final

__all__ = ["skops_io"]

_HIDDEN: Final = "torch"
_WALKER: Final = "all_estimators"  # sklearn.utils.discovery.all_estimators
_LOCK = threading.Lock()


class _HideFromTheWalk:
    """A meta-path finder refusing ``torch`` to imports made inside ``all_estimators``."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == _HIDDEN and _called_from(sys._getframe(1), _WALKER):
            raise ModuleNotFoundError(f"{name} is not imported for skops' estimator list")
        return None


def skops_io() -> ModuleType:
    """Return ``skops.io``, imported (once) without importing PyTorch along the way."""
    module = sys.modules.get("skops.io")
    if module is not None:
        return module
    with _LOCK:
        if _HIDDEN in sys.modules:  # already paid for: nothing to save
            return importlib.import_module("skops.io")
        finder = _HideFromTheWalk()
        sys.meta_path.insert(0, finder)
        try:
            return importlib.import_module("skops.io")
        finally:
            sys.meta_path.remove(finder)


def _called_from(frame: FrameType | None, function: str) -> bool:
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False
