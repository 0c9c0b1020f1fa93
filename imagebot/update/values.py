"""Render a new scalar value in the style of the one it replaces (pure)."""

from __future__ import annotations

import re

# What go-yaml v2 (YAML 1.1, what kyaml and the Kubernetes apiserver use) reads as non-strings.
_Y11_WORDS = frozenset(
    [
        "y",
        "Y",
        "yes",
        "Yes",
        "YES",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "true",
        "True",
        "TRUE",
        "false",
        "False",
        "FALSE",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
        "~",
        "null",
        "Null",
        "NULL",
        ".inf",
        ".Inf",
        ".INF",
        "+.inf",
        "+.Inf",
        "+.INF",
        "-.inf",
        "-.Inf",
        "-.INF",
        ".nan",
        ".NaN",
        ".NAN",
        "<<",
    ]
)
_Y11_INT = re.compile(r"[-+]?(?:0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)")
_Y11_FLOAT = re.compile(r"[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?")
# YAML 1.2 core schema additions, so both readers agree the value is a string.
_Y12_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SAFE_PLAIN = re.compile(r"[A-Za-z0-9_./@+][A-Za-z0-9_./@+:-]*")


def reads_as_non_string(value: str) -> bool:
    """True when ``value`` written plain would not be a string to a YAML 1.1 or 1.2 reader."""
    if value in _Y11_WORDS or value.lower() in ("true", "false", "null"):
        return True
    return bool(_Y11_INT.fullmatch(value) or _Y11_FLOAT.fullmatch(value) or _Y12_FLOAT.fullmatch(value))


def quote_double(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(value: str, style: str, flow: bool = False) -> str | None:
    """The bytes to write for ``value`` in a scalar of ``style``; None when the style cannot hold it.

    A plain scalar stays plain unless the value would then change type (``1.0``, ``20``, ``yes``),
    in which case it is double-quoted, as Flux does — and inside a flow collection when it holds
    a ``:``, which YAML 1.1 readers do not accept there. Quoted styles are kept.
    """
    if "\n" in value or "\r" in value:
        return None
    if style == "":
        if reads_as_non_string(value) or not _SAFE_PLAIN.fullmatch(value) or (flow and ":" in value):
            return quote_double(value)
        return value
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"':
        return quote_double(value)
    return None  # block scalars: never used for image references; refuse rather than restyle
