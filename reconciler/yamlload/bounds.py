"""The bounds a YAML text is read within, and the error that says which one it passed (or that it is no YAML)."""

from __future__ import annotations

from dataclasses import dataclass

INT = "tag:yaml.org,2002:int"
MERGE = "tag:yaml.org,2002:merge"
STR = "tag:yaml.org,2002:str"
MAP = "tag:yaml.org,2002:map"
SEQ = "tag:yaml.org,2002:seq"


@dataclass(frozen=True)
class Limits:
    """How much one YAML text may hold. Every bound is far above what a configuration file needs."""

    max_chars: int = 4 * 1024 * 1024  # of the whole text
    max_nodes: int = 1_000_000  # per document, every alias counted as the nodes it stands for
    max_depth: int = 100  # nesting of mappings and lists, aliases followed
    max_int_chars: int = 1000  # an integer literal's length (Python refuses to convert > 4300 digits)
    max_documents: int = 10_000  # in one text: each costs a validation and, in a manifest, a problem or an object
    unique_keys: bool = False  # refuse a mapping that names one key twice (otherwise the last one wins)
    string_keys: bool = False  # refuse keys that are not strings (`1:`, `on:`, `2026-01-01:`, `[a]:`)


MANIFESTS = Limits(unique_keys=True, string_keys=True)
LIVE = Limits(max_chars=32 * 1024 * 1024, max_nodes=2_000_000)


class YamlError(ValueError):
    """The text is not YAML, or is refused by the limits; the message says where (line, column), never what
    the text holds there, because a live file may hold secrets."""

    def __init__(
        self, message: str, *, document: int | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.document = document  # 1-based
        self.line = line  # 1-based
        self.field = field  # dotted path of the key, when known
