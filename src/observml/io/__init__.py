"""Data in and out: rows and message bodies.

Rows from frames, JSON and CSV are read by :mod:`~observml.io.rows`; the bodies of queue
messages, both ways, by :mod:`~observml.io.messages`.

Must not import: experiments, the hub, the runtime or any plugin implementation (only the
datastream protocol's message types).
"""
