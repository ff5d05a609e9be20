"""Writing YAML for people: no ``&id001`` anchors and ``*id001`` aliases.

PyYAML's dumpers write a value that occurs twice in a document (the same dict object under two
keys) once, with an anchor, and refer to it afterwards. That is valid YAML, but a config a person
reads and edits should spell every value out where it applies.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["dump_yaml"]


class _PlainDumper(yaml.SafeDumper):
    """A safe dumper that repeats shared values instead of anchoring them."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never write an alias."""
        return True


def dump_yaml(document: Any, *, sort_keys: bool = False) -> str:
    """Return ``document`` as block-style YAML text (unicode kept, no anchors or aliases)."""
    text: str = yaml.dump(document, Dumper=_PlainDumper, sort_keys=sort_keys, allow_unicode=True)
    return text
