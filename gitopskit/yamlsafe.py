"""YAML from repositories we do not control, loaded within bounds.

A 500-byte file of nested aliases ("billion laughs") expands to billions of nodes once anything
walks it (``json.dumps``, a diff, an apply); a flow sequence nested 100,000 deep makes libyaml's
recursive composer crash the process. So the parser's event stream is checked first — stream
size, nesting depth, and every document's size *with each alias expanded* (nodes and scalar text)
— and only a stream within :class:`Limits` is built into Python values (libyaml, YAML 1.2 safe
types, duplicate keys refused). The check stops at the first event over a limit, so a bomb costs
milliseconds. Errors carry the line and column and never a value from the document (a Secret's
data must not reach a log).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    ScalarEvent,
)

from gitopskit.errors import KitError

_CParser: Any
_CSafeLoader: Any
try:  # libyaml through ruamel.yaml.clibz: ~15x faster than the pure-Python loader
    from ruamel.yaml.cyaml import CParser as _CParser  # type: ignore[attr-defined]
    from ruamel.yaml.cyaml import CSafeLoader as _CSafeLoader
except ImportError:  # pragma: no cover - the pure-Python loader parses events too
    from ruamel.yaml.loader import SafeLoader as _CParser
    from ruamel.yaml.loader import SafeLoader as _CSafeLoader


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one YAML stream (a file). Generous for real manifests: the API server accepts at most
    3 MiB per object, and the largest CRDs in the wild have a few hundred thousand nodes."""

    max_bytes: int = 32 * 1024 * 1024  # the stream's text
    max_depth: int = 100  # collections nested in one document
    max_nodes: int = 1_000_000  # nodes of one document, every alias expanded
    max_text: int = 16 * 1024 * 1024  # characters of scalars in one document, every alias expanded


@dataclass(frozen=True, slots=True)
class Document:
    line: int  # 1-based line where the document starts
    data: Any  # None for an empty document


class YamlError(KitError):
    """Not valid YAML, or over a limit. ``str()`` is one line without document content."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        self.message, self.line, self.column = message, line, column
        super().__init__(f"line {line}, column {column}: {message}" if line else message)


class YamlLimitError(YamlError):
    """Within YAML's grammar, but over one of the :class:`Limits`."""


def load_all(text: str, limits: Limits = Limits()) -> list[Document]:
    """Every document of ``text``, checked against ``limits`` before any is built."""
    if len(text) > limits.max_bytes:
        raise YamlLimitError(f"{len(text)} characters exceed the limit of {limits.max_bytes} for one stream")
    lines = _check(text, limits)
    loader = _CSafeLoader(text)
    docs: list[Document] = []
    try:
        while loader.check_data():
            data = loader.get_data()
            docs.append(Document(lines[len(docs)] if len(docs) < len(lines) else 0, data))
    except YAMLError as exc:
        raise _error(exc) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a tagged value the safe constructor cannot build
        raise YamlError(f"a value cannot be constructed ({type(exc).__name__})") from None
    finally:
        loader.dispose()
    return docs


def load_json(text: str, limits: Limits = Limits()) -> list[Document] | None:
    """``text`` as its one document when it is plain JSON within ``limits``, else None (load it with
    :func:`load_all`, which also says why it is not). YAML 1.2 is a superset of JSON with the same meaning, and
    ``json`` is ~50x faster than building values from libyaml's events: manifests generated as JSON (and
    ``*.json`` files) are common. Duplicate keys and the non-JSON constants NaN/Infinity are left to
    :func:`load_all` (which refuses the one and reads the others as strings)."""
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] not in ("{", "[") or len(text) > min(limits.max_nodes, limits.max_text):
        return None  # (a node is at least one character, and text at most all of them: the size limits hold)
    if _JSON_NOT_YAML.search(text):
        return None
    try:
        data = json.loads(text, object_pairs_hook=_unique, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None
    if text.count("{") + text.count("[") > limits.max_depth and _depth(data) > limits.max_depth:
        return None
    return [Document(text.count("\n", 0, start) + 1, data)]


# where JSON and YAML read the same text differently: characters YAML refuses or takes for line breaks (DEL, C1
# controls, NEL, LS, PS, BOM, non-characters, lone surrogates), and surrogate-pair escapes JSON joins and YAML does not
_JSON_NOT_YAML = re.compile(r"[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]|\\[uU][dD][89abAB]")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _not_json(name: str) -> Any:
    raise ValueError(name)


def _depth(data: Any) -> int:
    deepest, todo = 0, [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            todo.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _check(text: str, limits: Limits) -> list[int]:
    """Walk the event stream within ``limits``; return the start line of each document."""
    parser = _CParser(text)
    lines: list[int] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, text) of its expanded value
    stack: list[list[Any]] = []  # open collections: [anchor, nodes, text]
    nodes = chars = 0
    try:
        while parser.check_event():
            ev = parser.get_event()
            if isinstance(ev, ScalarEvent):
                anchor, size = ev.anchor, (1, len(ev.value))
            elif isinstance(ev, CollectionStartEvent):
                stack.append([ev.anchor, 0, 0])
                if len(stack) > limits.max_depth:
                    raise _at(ev, f"nested deeper than {limits.max_depth} levels")
                continue
            elif isinstance(ev, CollectionEndEvent):
                anchor, n, c = stack.pop()
                size = (n + 1, c)
            elif isinstance(ev, AliasEvent):
                anchor, found = None, anchors.get(ev.anchor)
                if found is None:
                    recursive = any(f[0] == ev.anchor for f in stack)
                    what = f"{'recursive' if recursive else 'undefined'} alias *{_clip(ev.anchor)}"
                    raise YamlError(what, ev.start_mark.line + 1, ev.start_mark.column + 1)
                size = found
            elif isinstance(ev, DocumentStartEvent):
                lines.append(ev.start_mark.line + 1)
                anchors, nodes, chars = {}, 0, 0  # anchors are scoped to their document
                continue
            else:
                continue
            if anchor:
                anchors[anchor] = size
            if stack:
                stack[-1][1] += size[0]
                stack[-1][2] += size[1]
            # the document's expanded size grows by each leaf (a scalar, or an alias's whole value) and each collection
            nodes, chars = (nodes + 1, chars) if isinstance(ev, CollectionEndEvent) else (nodes + size[0], chars + size[1])
            if nodes > limits.max_nodes:
                raise _at(ev, f"the document expands to more than {limits.max_nodes} nodes (aliases expanded)")
            if chars > limits.max_text:
                raise _at(ev, f"the document expands to more than {limits.max_text} characters of text (aliases expanded)")
    except YAMLError as exc:
        raise _error(exc) from None
    finally:
        if hasattr(parser, "dispose"):
            parser.dispose()
    return lines


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _at(ev: Any, message: str) -> YamlError:
    mark = ev.start_mark
    return YamlLimitError(message, mark.line + 1, mark.column + 1)


_VALUE = re.compile(r" with value .*$", re.S)  # a duplicate key's message quotes both values


def _error(exc: YAMLError) -> YamlError:
    """One line: the problem, where, and what it was inside of — without the document's values."""
    if not isinstance(exc, MarkedYAMLError):
        return YamlError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    problem = _VALUE.sub("", " ".join(str(exc.problem or exc.context or "invalid YAML").split()))
    mark = exc.problem_mark or exc.context_mark
    context = ""
    if exc.problem and exc.context:
        cm = exc.context_mark
        context = f" ({exc.context}{f' at line {cm.line + 1}' if cm is not None else ''})"
    if mark is None:
        return YamlError(problem + context)
    return YamlError(problem + context, mark.line + 1, mark.column + 1)
