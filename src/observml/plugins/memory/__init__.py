"""In-memory plugins: real implementations of the protocols, kept in one process's memory.

For unit tests and notebooks (httpx ships ``MockTransport`` the same way). One module per
plugin: :mod:`.mlops` holds :class:`InMemoryMLOpsPlugin`, :mod:`.datastream`
:class:`InMemoryDataStreamPlugin`. Both are imported from here, which stays their public home:
the registry's ``"observml.plugins.memory:..."`` names, the ``target`` the REST API reports for
them and pickles all say ``observml.plugins.memory``.
"""

from __future__ import annotations

from observml.plugins.memory.datastream import InMemoryDataStreamPlugin
from observml.plugins.memory.mlops import InMemoryMLOpsPlugin

__all__ = ["InMemoryDataStreamPlugin", "InMemoryMLOpsPlugin"]

for _public in (InMemoryDataStreamPlugin, InMemoryMLOpsPlugin):
    _public.__module__ = __name__
del _public
