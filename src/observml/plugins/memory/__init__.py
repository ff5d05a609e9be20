"""In-memory plugins: real implementations of the protocols, kept in one process's memory.

For unit tests and notebooks (httpx ships ``MockTransport`` the same way). One module per
plugin: :mod:`.mlops` holds :class:`InMemoryMLOpsPlugin`, :mod:`.datastream`
:class:`InMemoryDataStreamPlugin`. Import both from here (``observml.plugins.memory``), as the
docs do.
"""

from __future__ import annotations

from observml.plugins.memory.datastream import InMemoryDataStreamPlugin
from observml.plugins.memory.mlops import InMemoryMLOpsPlugin

__all__ = ["InMemoryDataStreamPlugin", "InMemoryMLOpsPlugin"]
