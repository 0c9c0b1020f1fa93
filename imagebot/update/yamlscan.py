"""Locate every scalar of a YAML text: its path, value, style and exact character span.

The parse is ruamel.yaml's event stream — the libyaml-based C parser when
``ruamel.yaml.clibz`` is installed (about 25× faster), the pure-Python one otherwise; both
report character offsets into the original text (CRLF counts two). Nothing is ever dumped:
edits splice new value bytes into the original text at these spans, so comments, blank
lines, quoting, flow style and block scalars elsewhere stay exactly as written.

Bounded, because anyone who can commit to a scanned repository controls the text: files over
``MAX_BYTES`` and nesting deeper than ``MAX_DEPTH`` are refused (YamlLimitError), and memory is
linear in the text — a path is a chain of (parent, key) links shared by every node below it, made
into a tuple only when asked for (a 10,000-level nesting once cost half a gigabyte).

Pure: text in, data out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

try:  # pragma: no cover - depends on the platform wheel
    from ruamel.yaml.cyaml import CParser as _CParser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _CParser = None

PathItem = str | int
Path = tuple[PathItem, ...]
COMPLEX_KEY = "<complex key>"
MAX_BYTES = 8 << 20  # 8 MiB: Kubernetes stores at most ~1.5 MiB per object; big CRD bundles stay under this
MAX_DEPTH = 100  # Kubernetes manifests and Helm values nest a few dozen levels at most

# A path as links: (parent trail, key or index), or None at a document's root.
Trail = tuple[Any, PathItem] | None


def _path(trail: Trail) -> Path:
    items: list[PathItem] = []
    while trail is not None:
        trail, item = trail
        items.append(item)
    items.reverse()
    return tuple(items)


class YamlSyntaxError(ValueError):
    """The text is not YAML; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class YamlLimitError(YamlSyntaxError):
    """The text is over a size or nesting limit: refused before it costs memory."""


@dataclass(frozen=True, slots=True)
class Scalar:
    doc: int  # 0-based document index in the stream
    trail: Trail  # keys and sequence indices from the document root, as links (see ``path``)
    value: str
    style: str  # "" plain, "'" single, '"' double, "|" literal, ">" folded
    start: int  # character span in the text (quotes included)
    end: int
    line: int  # 1-based
    tag: str | None
    shared: bool  # the scalar or a container around it carries an anchor that an alias uses
    flow: bool  # inside a flow collection ([...] or {...}), where a plain scalar cannot hold ': ' or ','

    @property
    def path(self) -> Path:
        """Keys and sequence indices from the document root."""
        return _path(self.trail)

    @property
    def key(self) -> PathItem | None:
        return self.trail[1] if self.trail is not None else None


@dataclass(frozen=True, slots=True)
class Scan:
    scalars: tuple[Scalar, ...]  # value scalars (mapping keys excluded), in document order
    documents: int

    def by_path(self) -> dict[tuple[int, Path], Scalar]:
        return {(s.doc, s.path): s for s in self.scalars}


def _events(text: str) -> Iterator[Any]:
    if _CParser is not None:
        parser = _CParser(text)
        try:
            while True:
                ev = parser.get_event()
                yield ev
                if type(ev).__name__ == "StreamEndEvent":
                    return
        finally:
            parser.dispose()
    else:  # pragma: no cover
        yield from YAML(typ="rt").parse(text)


def _mark_line(exc: YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None


class _Memo:
    """The scans of recent texts, within a budget of characters (thread-safe).

    A delivery scans each edited file's new text twice — when the edit is verified, and when the file is
    read back from disk after writing — and the second is the same text: it is answered from here.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._held: OrderedDict[str, Scan] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> Scan | None:
        with self._lock:
            found = self._held.get(text)
            if found is not None:
                self._held.move_to_end(text)
            return found

    def put(self, text: str, result: Scan) -> None:
        if len(text) > self.budget // 16:  # one big file never evicts the rest
            return
        with self._lock:
            if text in self._held:
                return
            self._held[text] = result
            self._chars += len(text)
            while self._chars > self.budget:
                old, _ = self._held.popitem(last=False)
                self._chars -= len(old)


_MEMO = _Memo(8 * 1024 * 1024)


def scan(text: str) -> Scan:
    """Scan ``text`` (BOM already removed). Raises YamlSyntaxError on invalid YAML, YamlLimitError over a limit."""
    found = _MEMO.get(text)
    if found is None:
        found = _scan(text)
        _MEMO.put(text, found)
    return found


def _scan(text: str) -> Scan:
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"larger than the limit of {MAX_BYTES:,} characters: not scanned")
    # frame: [is_map, trail, expecting_key, key, index, anchors_on_path, is_complex_key, in_flow]
    stack: list[list[Any]] = []
    raw: list[tuple[int, Trail, str, str, int, int, int, str | None, frozenset[str], bool]] = []
    aliased: set[str] = set()
    doc = -1
    root_anchors: frozenset[str] = frozenset()

    def child_trail() -> tuple[Trail, bool]:
        """The trail of the node the parent expects next, and whether it is a mapping key."""
        if not stack:
            return None, False
        top = stack[-1]
        if top[0]:
            if top[2]:
                return top[1], True
            return (top[1], top[3]), False
        return (top[1], top[4]), False

    def advance() -> None:
        if stack:
            top = stack[-1]
            if top[0]:
                top[2] = not top[2]
            else:
                top[4] += 1

    try:
        for ev in _events(text):
            kind = type(ev).__name__
            if kind == "ScalarEvent":
                trail, is_key = child_trail()
                anchors = stack[-1][5] if stack else root_anchors
                if ev.anchor:
                    anchors = anchors | {ev.anchor}
                if is_key:
                    stack[-1][3] = ev.value
                else:
                    style = ev.style or ""
                    in_flow = bool(stack) and stack[-1][7]
                    raw.append(
                        (
                            doc,
                            trail,
                            ev.value,
                            style,
                            ev.start_mark.index,
                            ev.end_mark.index,
                            ev.start_mark.line + 1,
                            ev.tag,
                            anchors,
                            in_flow,
                        )
                    )
                advance()
            elif kind in ("MappingStartEvent", "SequenceStartEvent"):
                if len(stack) >= MAX_DEPTH:
                    raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep: not scanned", ev.start_mark.line + 1)
                trail, is_key = child_trail()
                if is_key:
                    trail = (trail, COMPLEX_KEY)
                anchors = stack[-1][5] if stack else root_anchors
                if ev.anchor:
                    anchors = anchors | {ev.anchor}
                in_flow = bool(ev.flow_style) or (bool(stack) and stack[-1][7])
                stack.append([kind == "MappingStartEvent", trail, True, None, 0, anchors, is_key, in_flow])
            elif kind in ("MappingEndEvent", "SequenceEndEvent"):
                frame = stack.pop()
                if frame[6] and stack:  # a complex key: the mapping now expects its value
                    stack[-1][3] = COMPLEX_KEY
                advance()
            elif kind == "AliasEvent":
                aliased.add(ev.anchor)
                trail, is_key = child_trail()
                if is_key:
                    stack[-1][3] = f"*{ev.anchor}"
                advance()
            elif kind == "DocumentStartEvent":
                doc += 1
                stack.clear()
    except YamlSyntaxError:
        raise
    except YAMLError as exc:
        raise YamlSyntaxError(str(exc).splitlines()[0] if str(exc) else "invalid YAML", _mark_line(exc)) from None
    except Exception as exc:  # the C parser raises plain errors for some malformed inputs
        raise YamlSyntaxError(f"invalid YAML: {exc}") from None
    scalars = tuple(
        Scalar(d, p, v, st, s, e, ln, tg, bool(anchors & aliased), fl) for d, p, v, st, s, e, ln, tg, anchors, fl in raw
    )
    return Scan(scalars, max(doc + 1, 0))
