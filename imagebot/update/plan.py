"""Planned edits: a new value for an existing scalar, or a key inserted into a block mapping."""

from __future__ import annotations

from dataclasses import dataclass

from imagebot.update.model import Target
from imagebot.update.yamlscan import Path, PathItem, Scalar


@dataclass(frozen=True, slots=True)
class SetValue:
    scalar: Scalar
    value: str
    target: Target
    subject: str


@dataclass(frozen=True, slots=True)
class InsertKey:
    """Insert ``key: value`` as a new line after character ``at`` (the end of a line)."""

    doc: int
    path: Path  # the inserted scalar's path
    at: int
    indent: str
    key: str
    value: str
    line: int
    target: Target
    subject: str


Edit = SetValue | InsertKey


def field_name(path: Path) -> str:
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def child(path: Path, *items: PathItem) -> Path:
    return (*path, *items)
