"""Compose configuration YAML into plain dicts, lists and scalars that remember their lines — fast and bounded.

The configuration needs no round trip, so it is built straight from the libyaml-based C parser's
event stream (``ruamel.yaml.clibz``; ruamel's pure-Python parser when that is missing), with the
YAML 1.2 core schema ruamel uses (``yes`` is a string, ``0x1f`` an int, ``.nan`` a float).

Anyone who can commit to the config repository controls this input, so it is bounded where it
enters: the file size (``MAX_BYTES``), the nesting depth (``MAX_DEPTH``) and the number of nodes
aliases expand to (``MAX_EXPANDED_NODES``: a "billion laughs" ``*b8`` is refused, not walked).
Aliased nodes are shared, never copied. Merge keys (``<<: *defaults``) work as in YAML 1.1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

MAX_BYTES = 1 << 20  # 1 MiB: a 1,200-line configuration is ~40 KB
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 250_000

_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_INT_RE = re.compile(r"[-+]?[0-9][0-9_]*|0o[0-7][0-7_]*|0x[0-9a-fA-F][0-9a-fA-F_]*|0b[01][01_]*")
_FLOAT_RE = re.compile(
    r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
    r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


class YamlLoadError(ValueError):
    """Not YAML, or YAML over a limit; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class Map(dict[Any, Any]):
    """A mapping that knows its own line and the line of each key (1-based)."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class Seq(list[Any]):
    """A sequence that knows its own line and the line of each item (1-based)."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


def line_of(node: Any, key: Any = None) -> int | None:
    """The line of ``node[key]`` (or of ``node`` itself), when known."""
    if isinstance(node, Map):
        return node.key_lines.get(key, node.line) if key is not None else node.line
    if isinstance(node, Seq):
        if isinstance(key, int) and 0 <= key < len(node.item_lines):
            return node.item_lines[key]
        return node.line
    return None


def _events(text: str) -> Iterator[Any]:
    try:
        from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - the C parser ships as a platform wheel
        from ruamel.yaml import YAML

        yield from YAML(typ="rt").parse(text)
        return
    parser = CParser(text)
    try:
        while True:
            ev = parser.get_event()
            yield ev
            if type(ev).__name__ == "StreamEndEvent":
                return
    finally:
        parser.dispose()


def _scalar(ev: Any, line: int) -> Any:
    value: str = ev.value
    tag = ev.tag
    if tag == "!" or (tag is None and not ev.implicit[0]):  # quoted or "!": a string
        return value
    if tag is None:  # plain: resolve as the YAML 1.2 core schema does
        if value in _NULLS:
            return None
        if value in _BOOLS:
            return _BOOLS[value]
        if _INT_RE.fullmatch(value):
            tag = _INT
        elif _FLOAT_RE.fullmatch(value):
            tag = _FLOAT
        else:
            return value
    try:
        if tag == _STR:
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return _BOOLS[value]
        if tag == _INT:
            v = value.replace("_", "")
            base = {"0o": 8, "0x": 16, "0b": 2}.get(v[:2], 10)
            return int(v[2:] if base != 10 else v, base)
        if tag == _FLOAT:
            v = value.replace("_", "").lower()
            if v.endswith(".nan"):
                return math.nan
            if v.endswith(".inf"):
                return -math.inf if v.startswith("-") else math.inf
            return float(v)
    except (KeyError, ValueError):
        raise YamlLoadError(f"{value!r} is not a valid {tag.rsplit(':', 1)[-1]}", line) from None
    raise YamlLoadError(f"unsupported tag {tag} on {value!r}", line)


def load_all(text: str, *, max_bytes: int = MAX_BYTES) -> list[Any]:
    """Every document of ``text`` as plain values (Map / Seq / scalars). Raises YamlLoadError."""
    if len(text) > max_bytes:
        raise YamlLoadError(f"larger than the limit of {max_bytes:,} bytes: refused")
    from ruamel.yaml.error import YAMLError

    docs: list[Any] = []
    anchors: dict[str, Any] = {}
    sizes: dict[int, int] = {}  # id(container) → nodes it expands to (aliases included)
    # frame: [container, pending key (Map) or marker, key line, merges, own size]
    stack: list[list[Any]] = []
    expanded = 0
    root: Any = None
    _NO_KEY = object()

    def attach(value: Any, line: int, size: int) -> bool:
        """Place ``value`` in the open container; True when it was a mapping key."""
        nonlocal root
        if not stack:
            root = value
            return False
        frame = stack[-1]
        frame[4] += size
        container = frame[0]
        if isinstance(container, Seq):
            container.append(value)
            container.item_lines.append(line)
            return False
        if frame[1] is _NO_KEY:
            if isinstance(value, (dict, list)):
                raise YamlLoadError("a mapping or sequence used as a key is not supported", line)
            frame[1], frame[2], frame[5] = value, line, False
            return True
        key, merge = frame[1], frame[5]
        frame[1] = _NO_KEY
        if merge:
            frame[3].append((value, line))
            return False
        if key in container:
            raise YamlLoadError(f"duplicate key {key!r} (first on line {container.key_lines[key]})", frame[2])
        container[key] = value
        container.key_lines[key] = frame[2]
        return False

    try:
        for ev in _events(text):
            kind = type(ev).__name__
            line = ev.start_mark.line + 1
            if kind == "ScalarEvent":
                value = _scalar(ev, line)
                expanded += 1
                if ev.anchor:
                    anchors[ev.anchor] = value
                if attach(value, line, 1) and value == "<<" and ev.tag is None and ev.implicit[0]:
                    stack[-1][5] = True  # a plain, untagged << key: its value is merged
            elif kind in ("MappingStartEvent", "SequenceStartEvent"):
                if len(stack) >= MAX_DEPTH:
                    raise YamlLoadError(f"nested more than {MAX_DEPTH} levels deep: refused", line)
                if ev.tag not in (None, "!", _MAP, _SEQ):
                    raise YamlLoadError(f"unsupported tag {ev.tag}", line)
                node: Map | Seq = Map(line) if kind == "MappingStartEvent" else Seq(line)
                expanded += 1
                if ev.anchor:
                    anchors[ev.anchor] = node
                stack.append([node, _NO_KEY, line, [], 1, False])
            elif kind in ("MappingEndEvent", "SequenceEndEvent"):
                frame = stack.pop()
                node, size = frame[0], frame[4]
                for source, mline in frame[3]:
                    for m in source if isinstance(source, list) else [source]:
                        if not isinstance(m, Map):
                            raise YamlLoadError("a merge key (<<) takes a mapping or a list of mappings", mline)
                        for k, v in m.items():
                            if isinstance(node, Map) and k not in node:
                                node[k] = v
                                node.key_lines[k] = m.key_lines.get(k, mline)
                sizes[id(node)] = size
                attach(node, node.line, size)
            elif kind == "AliasEvent":
                target = anchors.get(ev.anchor, _NO_KEY)
                if target is _NO_KEY or any(f[0] is target for f in stack):
                    raise YamlLoadError(f"alias *{ev.anchor} refers to no anchor, or to a node that contains it", line)
                size = sizes.get(id(target), 1) if isinstance(target, (Map, Seq)) else 1
                expanded += size
                if expanded > MAX_EXPANDED_NODES:
                    raise YamlLoadError(
                        f"aliases expand to more than {MAX_EXPANDED_NODES:,} nodes (an alias bomb?): refused", line
                    )
                attach(target, line, size)
            elif kind == "DocumentStartEvent":
                root, stack, anchors = None, [], {}
            elif kind == "DocumentEndEvent":
                docs.append(root)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        raise YamlLoadError(str(exc).splitlines()[0] if str(exc) else "invalid YAML", mark.line + 1 if mark else None) from None
    except YamlLoadError:
        raise
    except (ValueError, TypeError, AttributeError) as exc:  # the C parser raises plain errors for some inputs
        raise YamlLoadError(f"invalid YAML: {exc}") from None
    return docs
