"""Flux's ``messageTemplate``: the subset of Go's ``text/template`` Flux users write, rendered in a sandbox (pure).

Flux renders an ImageUpdateAutomation's commit message with Go's ``text/template`` over ``TemplateData``
(``AutomationObject``, ``Changed``, the deprecated ``Updated``, ``Values``). This module parses and runs the
part of that language Flux's documentation and users actually use, with Go's semantics — whitespace
trimming, truth, map ordering, printing and ``printf`` verbs — so a team's existing template renders the
same message. Everything else (``define``/``template``/``block``, unsupported functions, float constants,
``printf`` verbs we do not implement…) is a :class:`TemplateError` naming the construct and its line and
column: never a silently different message.

The sandbox: the template only sees the data given (no environment, no clock, no I/O); a template over
64 KiB, nesting over 100 levels, output over 1 MiB or more than a million evaluation steps is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from imagebot.errors import ConfigError
from imagebot.refs import try_parse

MAX_TEMPLATE_BYTES = 64 * 1024
MAX_OUTPUT_BYTES = 1024 * 1024
MAX_DEPTH = 100
MAX_STEPS = 1_000_000
DEFAULT_MESSAGE = "Update from image update automation"  # Flux's default when messageTemplate is unset


class TemplateError(ConfigError):
    """A template outside the supported subset, or one that failed to render. The message has line:column."""


# --- the data Flux gives a template, as Go values --------------------------------------------------------


class GoStruct:
    """A Go struct value: exported fields and niladic methods by Go name; printed like ``%v``."""

    GO_TYPE: ClassVar[str] = "struct"
    FIELDS: ClassVar[tuple[str, ...]] = ()  # in declaration order: printing and map-key ordering use it
    METHODS: ClassVar[tuple[str, ...]] = ()

    def go_fields(self) -> tuple[str, ...]:
        return self.FIELDS

    def go_field(self, name: str) -> Any:
        raise NotImplementedError

    def go_method(self, name: str) -> Any:
        raise NotImplementedError

    def go_string(self) -> str | None:
        """``String()`` when the Go type is a fmt.Stringer."""
        return None

    def go_sort_key(self) -> tuple[Any, ...]:
        return tuple(_sort_key(self.go_field(f)) for f in self.go_fields())


@dataclass(frozen=True, slots=True)
class GoMap:
    """A Go map: ranged in sorted key order (as Go's text/template does); a missing key is the zero value."""

    items: Mapping[Any, Any]
    zero: Any = ""
    go_type: str = "map"


@dataclass(frozen=True, slots=True, eq=True)
class NamespacedName(GoStruct):
    GO_TYPE: ClassVar[str] = "types.NamespacedName"
    FIELDS: ClassVar[tuple[str, ...]] = ("Namespace", "Name")
    namespace: str
    name: str

    def go_field(self, name: str) -> Any:
        return {"Namespace": self.namespace, "Name": self.name}[name]

    def go_string(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, eq=True)
class ObjectId(GoStruct):
    """update.ObjectIdentifier: kyaml's ResourceIdentifier (TypeMeta{APIVersion, Kind}, NameMeta{Name, Namespace})
    embedded, so its fields are promoted, and maps keyed by it range in that field order."""

    GO_TYPE: ClassVar[str] = "update.ObjectIdentifier"
    FIELDS: ClassVar[tuple[str, ...]] = ("APIVersion", "Kind", "Name", "Namespace")
    api_version: str
    kind: str
    name: str
    namespace: str = ""

    def go_field(self, name: str) -> Any:
        return {"APIVersion": self.api_version, "Kind": self.kind, "Name": self.name, "Namespace": self.namespace}[name]

    def go_v(self) -> str:
        return f"{{{{{{{self.api_version} {self.kind}}} {{{self.name} {self.namespace}}}}}}}"


@dataclass(frozen=True, slots=True, eq=True)
class GoChange(GoStruct):
    GO_TYPE: ClassVar[str] = "update.Change"
    FIELDS: ClassVar[tuple[str, ...]] = ("OldValue", "NewValue", "Setter")
    old: str
    new: str
    setter: str

    def go_field(self, name: str) -> Any:
        return {"OldValue": self.old, "NewValue": self.new, "Setter": self.setter}[name]


@dataclass(frozen=True, slots=True, eq=True)
class GoImageRef(GoStruct):
    """update.ImageRef (the deprecated ``.Updated``): the new image as written, with go-containerregistry's views."""

    GO_TYPE: ClassVar[str] = "update.ImageRef"
    METHODS: ClassVar[tuple[str, ...]] = ("String", "Identifier", "Repository", "Registry", "Name", "Policy")
    image: str
    policy: NamespacedName

    def _parts(self) -> tuple[str, str, str]:
        ref = try_parse(self.image)
        if ref is None:
            return "", self.image, ""
        registry = "index.docker.io" if ref.canonical_registry == "docker.io" else ref.canonical_registry
        ident = ref.digest or ref.tag or "latest"
        return registry, ref.canonical_path, ident

    def go_method(self, name: str) -> Any:
        registry, repo, ident = self._parts()
        sep = "@" if ident.startswith("sha") and ":" in ident else ":"
        return {
            "String": self.image,
            "Identifier": ident,
            "Repository": repo,
            "Registry": registry,
            "Name": f"{registry}/{repo}{sep}{ident}" if registry else self.image,
            "Policy": self.policy,
        }[name]

    def go_string(self) -> str:
        return self.image


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One edit as the controller reports it: where (file, object), what (old → new, by which setter)."""

    file: str
    object: ObjectId
    old: str
    new: str
    setter: str  # the marker's policy, e.g. flux-system:podinfo (Flux's Change.Setter)
    image: str = ""  # the full new image the policy selected (for the deprecated .Updated), "" if unknown


def _by_file(records: Sequence[ChangeRecord]) -> dict[str, dict[ObjectId, list[ChangeRecord]]]:
    out: dict[str, dict[ObjectId, list[ChangeRecord]]] = {}
    for r in records:
        out.setdefault(r.file, {}).setdefault(r.object, []).append(r)
    return out


@dataclass(frozen=True, slots=True)
class UpdatedResult(GoStruct):
    """update.Result (deprecated ``.Updated``; removed in image.toolkit.fluxcd.io/v1): file → objects → images."""

    GO_TYPE: ClassVar[str] = "update.Result"
    FIELDS: ClassVar[tuple[str, ...]] = ("Files",)
    METHODS: ClassVar[tuple[str, ...]] = ("Images", "Objects")
    records: tuple[ChangeRecord, ...]

    def _images(self, rs: Sequence[ChangeRecord]) -> list[GoImageRef]:
        out: list[GoImageRef] = []
        for r in rs:
            parts = r.setter.split(":")
            policy = NamespacedName(parts[0], parts[1]) if len(parts) > 1 else NamespacedName("", parts[0])
            ref = GoImageRef(r.image or r.new, policy)
            if ref not in out:
                out.append(ref)
        return out

    def go_field(self, name: str) -> Any:
        files = {
            f: FileResult(GoMap({o: self._images(rs) for o, rs in objs.items()}, zero=[]))
            for f, objs in _by_file(self.records).items()
        }
        return GoMap(files, zero=FileResult(GoMap({}, zero=[])))

    def go_method(self, name: str) -> Any:
        if name == "Images":  # Go ranges a map here: imagebot gives file order, then object order, deterministically
            return self._images(sorted(self.records, key=lambda r: (r.file, r.object.go_sort_key())))
        objects: dict[ObjectId, list[GoImageRef]] = {}
        for r in self.records:
            objects.setdefault(r.object, [])
            for img in self._images([r]):
                objects[r.object].append(img)
        return GoMap(objects, zero=[])


@dataclass(frozen=True, slots=True)
class FileResult(GoStruct):
    GO_TYPE: ClassVar[str] = "update.FileResult"
    FIELDS: ClassVar[tuple[str, ...]] = ("Objects",)
    objects: GoMap

    def go_field(self, name: str) -> Any:
        return self.objects


@dataclass(frozen=True, slots=True)
class ChangedResult(GoStruct):
    """update.ResultV2 (``.Changed``): ``FileChanges`` (file → object → changes), ``Changes``, ``Objects``."""

    GO_TYPE: ClassVar[str] = "update.ResultV2"
    FIELDS: ClassVar[tuple[str, ...]] = ("ImageResult", "FileChanges")
    METHODS: ClassVar[tuple[str, ...]] = ("Changes", "Objects")
    records: tuple[ChangeRecord, ...]
    legacy: bool = False  # v1beta2's ResultV2 also carries ImageResult; v1's Result has FileChanges only

    def go_fields(self) -> tuple[str, ...]:
        return self.FIELDS if self.legacy else ("FileChanges",)

    def go_field(self, name: str) -> Any:
        if name == "ImageResult":
            if not self.legacy:
                raise _Unknown("field ImageResult was removed in image.toolkit.fluxcd.io/v1: use .FileChanges")
            return UpdatedResult(self.records)
        files = {
            f: GoMap({o: [GoChange(r.old, r.new, r.setter) for r in rs] for o, rs in objs.items()}, zero=[])
            for f, objs in _by_file(self.records).items()
        }
        return GoMap(files, zero=GoMap({}, zero=[]))

    def go_method(self, name: str) -> Any:
        ordered = sorted(self.records, key=lambda r: (r.file, r.object.go_sort_key()))
        if name == "Changes":  # distinct changes; Go's order is a map's, imagebot's is by file then object
            out: list[GoChange] = []
            for r in ordered:
                c = GoChange(r.old, r.new, r.setter)
                if c not in out:
                    out.append(c)
            return out
        objects: dict[ObjectId, list[GoChange]] = {}
        for r in ordered:
            objects.setdefault(r.object, []).append(GoChange(r.old, r.new, r.setter))
        return GoMap(objects, zero=[])


class ApiVersion(StrEnum):
    V1BETA2 = "v1beta2"
    V1 = "v1"


@dataclass(frozen=True, slots=True)
class TemplateData(GoStruct):
    GO_TYPE: ClassVar[str] = "TemplateData"
    FIELDS: ClassVar[tuple[str, ...]] = ("AutomationObject", "Updated", "Changed", "Values")
    automation: NamespacedName
    records: tuple[ChangeRecord, ...] = ()
    values: Mapping[str, str] = field(default_factory=dict)
    api_version: ApiVersion = ApiVersion.V1

    def go_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.FIELDS if f != "Updated" or self.api_version is ApiVersion.V1BETA2)

    def go_field(self, name: str) -> Any:
        if name == "AutomationObject":
            return self.automation
        if name == "Updated":
            if self.api_version is ApiVersion.V1:
                raise _Unknown("field Updated was removed in image.toolkit.fluxcd.io/v1: use .Changed")
            return UpdatedResult(self.records)
        if name == "Changed":
            return ChangedResult(self.records, legacy=self.api_version is ApiVersion.V1BETA2)
        return GoMap(dict(self.values), zero="")


def template_data(
    namespace: str,
    name: str,
    records: Sequence[ChangeRecord] = (),
    values: Mapping[str, str] | None = None,
    api_version: str = ApiVersion.V1,
) -> TemplateData:
    return TemplateData(NamespacedName(namespace, name), tuple(records), dict(values or {}), ApiVersion(api_version))


@dataclass(frozen=True, slots=True)
class GoMessage:
    """An ImageUpdateAutomation's commit message as a delivery renders it: the template, the object, the values."""

    namespace: str
    name: str
    template: str = ""  # "" renders Flux's default message
    values: tuple[tuple[str, str], ...] = ()
    api_version: str = ApiVersion.V1

    def render(self, records: Sequence[ChangeRecord]) -> str:
        data = template_data(self.namespace, self.name, records, dict(self.values), self.api_version)
        return render(self.template, data)


def sample_data(api_version: str = ApiVersion.V1) -> TemplateData:
    """Representative data (two files, two objects, three changes): what ``check`` renders to validate a template."""
    dep = ObjectId("apps/v1", "Deployment", "podinfo", "apps")
    cron = ObjectId("batch/v1", "CronJob", "cleanup", "apps")
    records = (
        ChangeRecord("apps/podinfo.yaml", dep, "ghcr.io/stefanprodan/podinfo:5.0.0", "ghcr.io/stefanprodan/podinfo:5.0.3",
                     "flux-system:podinfo", "ghcr.io/stefanprodan/podinfo:5.0.3"),
        ChangeRecord("apps/podinfo.yaml", dep, "1.0.0", "1.1.0", "flux-system:sidecar:tag", "ghcr.io/org/sidecar:1.1.0"),
        ChangeRecord("jobs/cleanup.yaml", cron, "busybox:1.36", "busybox:1.37", "flux-system:busybox", "busybox:1.37"),
    )  # fmt: skip
    return template_data("flux-system", "podinfo-update", records, {"cluster": "prod"}, api_version)


# --- lexing -----------------------------------------------------------------------------------------------


class _Unknown(Exception):
    """Raised by data lookups; the executor adds the position."""


class Tok(StrEnum):
    SPACE = "space"
    FIELD = "field"
    DOT = "dot"
    VAR = "variable"
    IDENT = "identifier"
    STRING = "string"
    NUMBER = "number"
    CHAR = "char"
    LPAREN = "("
    RPAREN = ")"
    PIPE = "|"
    DECLARE = ":="
    ASSIGN = "="
    COMMA = ","
    END = "}}"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str
    pos: int


_SPACE = " \t\r\n"
_DIGITS = "0123456789"
_VARNAME = re.compile(r"\w*")
_IDENT = re.compile(r"[^\W\d]\w*")
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eEpP][+-]?[0-9_]+)?i?")
_ESCAPE = re.compile(r"\\(?:[abfnrtv\\'\"]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3})")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"'}


def _position(src: str, pos: int) -> tuple[int, int]:
    line = src.count("\n", 0, pos) + 1
    return line, pos - (src.rfind("\n", 0, pos) + 1) + 1


class _Lexer:
    def __init__(self, src: str, name: str) -> None:
        self.src, self.name = src, name

    def error(self, pos: int, message: str) -> TemplateError:
        line, col = _position(self.src, pos)
        return TemplateError(f"{self.name}:{line}:{col}: {message}")

    def pieces(self) -> Iterator[tuple[str, int, Any]]:
        """``("text", pos, str)`` and ``("action", pos, [Token])``, trim markers applied; comments dropped."""
        src, i, n = self.src, 0, len(self.src)
        trim_next = False
        while i <= n:
            j = src.find("{{", i)
            text = src[i:] if j < 0 else src[i:j]
            if trim_next:
                text, i = text.lstrip(_SPACE), i + len(text) - len(text.lstrip(_SPACE))
            k = j + 2
            trim_left = j >= 0 and src.startswith("-", k) and k + 1 < n and src[k + 1] in _SPACE
            if trim_left:
                text = text.rstrip(_SPACE)
                k += 2
            if text:
                yield ("text", i, text)
            if j < 0:
                return
            if src.startswith("/*", k):
                end = src.find("*/", k + 2)
                if end < 0:
                    raise self.error(j, "unclosed comment")
                k = end + 2
                if src.startswith("}}", k):
                    i, trim_next = k + 2, False
                elif k < n and src[k] in _SPACE and src.startswith("-}}", k + 1):
                    i, trim_next = k + 4, True
                else:
                    raise self.error(j, "comment ends before closing delimiter")
                continue
            tokens, i, trim_next = self._action(k, j)
            yield ("action", j, tokens)

    def _action(self, k: int, start: int) -> tuple[list[Token], int, bool]:
        src, n = self.src, len(self.src)
        toks: list[Token] = []
        while True:
            if k >= n:
                raise self.error(start, "unclosed action")
            c = src[k]
            if c in _SPACE and src.startswith("-}}", k + 1):
                toks.append(Token(Tok.END, "}}", k))
                return toks, k + 4, True
            if src.startswith("}}", k):
                toks.append(Token(Tok.END, "}}", k))
                return toks, k + 2, False
            if c in _SPACE:
                e = k + 1  # the space right before " -}}" belongs to the trim marker
                while e < n and src[e] in _SPACE and not src.startswith("-}}", e + 1):
                    e += 1
                toks.append(Token(Tok.SPACE, src[k:e], k))
                k = e
                continue
            if src.startswith("/*", k):
                raise self.error(k, "a comment must be the whole action: {{/* ... */}}")
            if c == ".":
                m = _IDENT.match(src, k + 1)
                if m is not None:
                    toks.append(Token(Tok.FIELD, m.group(), k))
                    k = m.end()
                    continue
                if src[k + 1 : k + 2] in _DIGITS:
                    raise self.error(k, "float constant: only integer constants are supported")
                toks.append(Token(Tok.DOT, ".", k))
                k += 1
                continue
            if c == "$":
                m = _VARNAME.match(src, k + 1)
                assert m is not None  # \w* matches the empty string
                toks.append(Token(Tok.VAR, "$" + m.group(), k))
                k = m.end()
                continue
            if c == '"':
                k = self._string(k, toks)
                continue
            if c == "`":
                e = src.find("`", k + 1)
                if e < 0:
                    raise self.error(k, "unterminated raw quoted string")
                toks.append(Token(Tok.STRING, src[k + 1 : e], k))
                k = e + 1
                continue
            if c == "'":
                m = re.compile(r"'(\\[^']*|[^\\'\n])'").match(src, k)
                if m is None:
                    raise self.error(k, "malformed character constant")
                value = _unescape(m.group(1), self.error(k, "malformed character constant"))
                if len(value) != 1:
                    raise self.error(k, "malformed character constant")
                toks.append(Token(Tok.CHAR, value, k))
                k = m.end()
                continue
            if c in _DIGITS or (c in "+-" and src[k + 1 : k + 2] in _DIGITS and k + 1 < n):
                m = _NUMBER.match(src, k)
                assert m is not None
                toks.append(Token(Tok.NUMBER, m.group(), k))
                k = m.end()
                continue
            m = _IDENT.match(src, k)
            if m is not None:
                toks.append(Token(Tok.IDENT, m.group(), k))
                k = m.end()
                continue
            for text, kind in ((":=", Tok.DECLARE), ("=", Tok.ASSIGN), ("(", Tok.LPAREN), (")", Tok.RPAREN),
                               ("|", Tok.PIPE), (",", Tok.COMMA)):  # fmt: skip
                if src.startswith(text, k):
                    toks.append(Token(kind, text, k))
                    k += len(text)
                    break
            else:
                raise self.error(k, f"unexpected {c!r} in action")

    def _string(self, k: int, toks: list[Token]) -> int:
        src = self.src
        e = k + 1
        while True:
            if e >= len(src) or src[e] == "\n":
                raise self.error(k, "unterminated quoted string")
            if src[e] == "\\":
                e += 2
                continue
            if src[e] == '"':
                break
            e += 1
        toks.append(Token(Tok.STRING, _unescape(src[k + 1 : e], self.error(k, "bad escape in quoted string")), k))
        return e + 1


def _unescape(body: str, bad: TemplateError) -> str:
    out, i = [], 0
    while i < len(body):
        if body[i] != "\\":
            out.append(body[i])
            i += 1
            continue
        m = _ESCAPE.match(body, i)
        if m is None:
            raise bad
        esc = m.group()[1:]
        if esc[0] in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc[0]])
        elif esc[0] in "xuU":
            out.append(chr(int(esc[1:], 16)))
        else:
            out.append(chr(int(esc, 8)))
        i = m.end()
    return "".join(out)


# --- the parse tree ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Const:
    value: Any
    pos: int


@dataclass(frozen=True, slots=True)
class Dot:
    pos: int


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Func:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Chain:
    """``.A.B`` (on dot), ``$x.A``, ``(pipeline).A``."""

    base: Any  # Dot, Var or Pipeline
    fields: tuple[str, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Command:
    args: tuple[Any, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Pipeline:
    decl: tuple[str, ...]
    assign: bool  # '=' rather than ':='
    cmds: tuple[Command, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Action:
    pipe: Pipeline


@dataclass(frozen=True, slots=True)
class Control:
    kind: str  # if, range, with
    pipe: Pipeline
    body: tuple[Any, ...]
    orelse: tuple[Any, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Jump:
    kind: str  # break, continue
    pos: int


SUPPORTED_FUNCTIONS = (
    "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "print", "printf", "println",
    # Sprig's string helpers Flux users reach for (Flux's docs use lower and contains)
    "lower", "upper", "trim", "trimPrefix", "trimSuffix", "contains", "hasPrefix", "hasSuffix", "replace", "join",
    "default",
)  # fmt: skip
_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block", "nil", "true", "false"}
_REFUSED_KEYWORDS = {
    "define": "{{define}} (named templates)",
    "template": "{{template}} (named templates)",
    "block": "{{block}} (named templates)",
}


class _Parser:
    def __init__(self, src: str, name: str) -> None:
        self.lex = _Lexer(src, name)
        self.vars: list[str] = ["$"]
        self.depth = 0
        self.loops = 0
        self._tail = 0

    def error(self, pos: int, message: str) -> TemplateError:
        return self.lex.error(pos, message)

    def parse(self) -> tuple[Any, ...]:
        self.items = list(self.lex.pieces())
        self.at = 0
        body, stop = self._list()
        if stop is not None:
            raise self.error(stop[1], f"unexpected {{{{{stop[0]}}}}}")
        return body

    def _list(self) -> tuple[tuple[Any, ...], tuple[str, int, list[Token]] | None]:
        """Nodes until {{end}} / {{else ...}} (returned as the stop, with its remaining tokens) or the end."""
        out: list[Any] = []
        while self.at < len(self.items):
            kind, pos, payload = self.items[self.at]
            self.at += 1
            if kind == "text":
                out.append(Text(payload))
                continue
            toks = [t for t in payload]
            first = next((t for t in toks if t.kind is not Tok.SPACE), None)
            assert first is not None
            if first.kind is Tok.END:
                raise self.error(pos, "missing value for command")
            word = first.text if first.kind is Tok.IDENT else ""
            rest = toks[toks.index(first) + 1 :]
            if word in ("end", "else"):
                return tuple(out), (word, first.pos, rest)
            if word in _REFUSED_KEYWORDS:
                raise self.error(first.pos, f"{_REFUSED_KEYWORDS[word]} is outside the supported subset")
            if word in ("if", "range", "with"):
                out.append(self._control(word, first.pos, rest))
            elif word in ("break", "continue"):
                if not self.loops:
                    raise self.error(first.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                self._expect_end(rest, word)
                out.append(Jump(word, first.pos))
            else:
                out.append(Action(self._pipeline(toks, pos, decl_ok=True, ctx="command")))
        return tuple(out), None

    def _expect_end(self, toks: list[Token], what: str) -> None:
        for t in toks:
            if t.kind is Tok.SPACE:
                continue
            if t.kind is not Tok.END:
                raise self.error(t.pos, f"unexpected {t.text!r} in {what}")

    def _control(self, kind: str, pos: int, toks: list[Token]) -> Control:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(pos, f"nesting deeper than {MAX_DEPTH} levels")
        mark = len(self.vars)
        pipe = self._pipeline(toks, pos, decl_ok=True, ctx=kind, two_vars=kind == "range")
        if kind == "range":
            self.loops += 1
        body, stop = self._list()
        if kind == "range":
            self.loops -= 1
        orelse: tuple[Any, ...] = ()
        if stop is None:
            raise self.error(pos, f"unexpected EOF: {{{{{kind}}}}} has no {{{{end}}}}")
        word, spos, rest = stop
        if word == "else":
            nxt = next((t for t in rest if t.kind is not Tok.SPACE), None)
            if nxt is not None and nxt.kind is Tok.IDENT and nxt.text in ("if", "with") and kind != "range":
                if nxt.text != kind:
                    raise self.error(nxt.pos, f"{{{{else {nxt.text}}}}} inside {{{{{kind}}}}}")
                # {{else if X}} is {{else}}{{if X}}...{{end}}: the nested control consumes our {{end}}
                orelse = (self._control(kind, nxt.pos, rest[rest.index(nxt) + 1 :]),)
                del self.vars[mark:]
                self.depth -= 1
                return Control(kind, pipe, body, orelse, pos)
            self._expect_end(rest, "{{else}}")
            orelse, stop = self._list()
            if stop is None:
                raise self.error(pos, f"unexpected EOF: {{{{{kind}}}}} has no {{{{end}}}}")
            word, spos, rest = stop
            if word != "end":
                raise self.error(spos, "expected {{end}} after {{else}}")
        self._expect_end(rest, "{{end}}")
        del self.vars[mark:]
        self.depth -= 1
        return Control(kind, pipe, body, orelse, pos)

    def _pipeline(self, toks: list[Token], pos: int, *, decl_ok: bool, ctx: str, two_vars: bool = False) -> Pipeline:
        toks = [t for t in toks]
        i = 0

        def skip() -> None:
            nonlocal i
            while i < len(toks) and toks[i].kind is Tok.SPACE:
                i += 1

        skip()
        decl: list[str] = []
        assign = False
        # declarations: $x := / $x = / $i, $e :=
        j = i
        names: list[Token] = []
        while j < len(toks) and toks[j].kind is Tok.VAR:
            names.append(toks[j])
            j += 1
            while j < len(toks) and toks[j].kind is Tok.SPACE:
                j += 1
            if j < len(toks) and toks[j].kind is Tok.COMMA and two_vars and len(names) == 1:
                j += 1
                while j < len(toks) and toks[j].kind is Tok.SPACE:
                    j += 1
                continue
            break
        if names and j < len(toks) and toks[j].kind in (Tok.DECLARE, Tok.ASSIGN):
            if not decl_ok:
                raise self.error(names[0].pos, "variable declaration inside parentheses")
            assign = toks[j].kind is Tok.ASSIGN
            for t in names:
                if t.text == "$":
                    raise self.error(t.pos, "cannot declare or assign $")
                if assign and t.text not in self.vars:
                    raise self.error(t.pos, f"undefined variable {t.text!r}")
            decl = [t.text for t in names]
            i = j + 1
        elif len(names) > 1:
            raise self.error(names[0].pos, f"too many declarations in {ctx}")
        cmds: list[Command] = []
        while True:
            skip()
            if i >= len(toks) or toks[i].kind in (Tok.END, Tok.RPAREN):
                break
            cmd, i = self._command(toks, i)
            cmds.append(cmd)
            skip()
            if i < len(toks) and toks[i].kind is Tok.PIPE:
                i += 1
                continue
            break
        closing = Tok.RPAREN if ctx == "parenthesized pipeline" else Tok.END
        if closing is Tok.RPAREN and i < len(toks) and toks[i].kind is Tok.END:
            raise self.error(pos, "unclosed left paren")
        if i < len(toks) and toks[i].kind is not closing:
            raise self.error(toks[i].pos, f"unexpected {toks[i].text!r} in {ctx}")
        if not cmds:
            raise self.error(pos, f"missing value for {ctx}")
        if not assign:
            self.vars.extend(decl)
        for c in cmds[1:]:
            first = c.args[0]
            if isinstance(first, Const):
                raise self.error(c.pos, "non-executable command in pipeline stage")
        self._tail = i
        return Pipeline(tuple(decl), assign, tuple(cmds), pos)

    def _command(self, toks: list[Token], i: int) -> tuple[Command, int]:
        args: list[Any] = []
        start = toks[i].pos
        while i < len(toks):
            t = toks[i]
            if t.kind in (Tok.END, Tok.RPAREN, Tok.PIPE):
                break
            if t.kind is Tok.SPACE:
                i += 1
                continue
            if args and toks[i - 1].kind is not Tok.SPACE:
                raise self.error(t.pos, f"unexpected {t.text!r} in operand (missing space?)")
            node, i = self._operand(toks, i)
            args.append(node)
        if not args:
            raise self.error(start, "empty command")
        if isinstance(args[0], Const) and args[0].value is None:
            raise self.error(args[0].pos, "nil is not a command")
        fn = args[0]
        if isinstance(fn, Func) and fn.name == "printf" and len(args) > 1:
            fmt = args[1]
            if isinstance(fmt, Const) and isinstance(fmt.value, str):
                try:
                    check_format(fmt.value)
                except ValueError as exc:  # a constant format is checked at load, not at commit time
                    raise self.error(fmt.pos, str(exc)) from None
        return Command(tuple(args), start), i

    def _operand(self, toks: list[Token], i: int) -> tuple[Any, int]:
        t = toks[i]
        node: Any
        if t.kind is Tok.FIELD:
            names = [t.text]
            i += 1
            while i < len(toks) and toks[i].kind is Tok.FIELD:
                names.append(toks[i].text)
                i += 1
            return Chain(Dot(t.pos), tuple(names), t.pos), i
        if t.kind is Tok.DOT:
            node, i = Dot(t.pos), i + 1
        elif t.kind is Tok.VAR:
            if t.text not in self.vars:
                raise self.error(t.pos, f"undefined variable {t.text!r}")
            node, i = Var(t.text, t.pos), i + 1
        elif t.kind is Tok.STRING:
            node, i = Const(t.text, t.pos), i + 1
        elif t.kind is Tok.CHAR:
            node, i = Const(ord(t.text), t.pos), i + 1
        elif t.kind is Tok.NUMBER:
            node, i = Const(self._number(t), t.pos), i + 1
        elif t.kind is Tok.IDENT:
            if t.text in ("true", "false"):
                node = Const(t.text == "true", t.pos)
            elif t.text == "nil":
                node = Const(None, t.pos)
            elif t.text in _KEYWORDS:
                raise self.error(t.pos, f"unexpected keyword {t.text!r} in operand")
            elif t.text not in SUPPORTED_FUNCTIONS:
                raise self.error(t.pos, f"function {t.text!r} is outside the supported subset "
                                        f"(supported: {', '.join(SUPPORTED_FUNCTIONS)})")  # fmt: skip
            else:
                node = Func(t.text, t.pos)
            i += 1
        elif t.kind is Tok.LPAREN:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(t.pos, f"nesting deeper than {MAX_DEPTH} levels")
            inner = self._pipeline(toks[i + 1 :], t.pos, decl_ok=False, ctx="parenthesized pipeline")
            i = i + 1 + self._tail
            if i >= len(toks) or toks[i].kind is not Tok.RPAREN:
                raise self.error(t.pos, "unclosed left paren")
            self.depth -= 1
            node, i = inner, i + 1
        else:
            raise self.error(t.pos, f"unexpected {t.text!r} in operand")
        if i < len(toks) and toks[i].kind is Tok.FIELD:
            if isinstance(node, (Const, Func)):
                raise self.error(toks[i].pos, f"unexpected {toks[i].text!r} after a constant or function")
            names = []
            while i < len(toks) and toks[i].kind is Tok.FIELD:
                names.append(toks[i].text)
                i += 1
            node = Chain(node, tuple(names), t.pos)
        return node, i

    def _number(self, t: Token) -> int:
        text = t.text.replace("_", "")
        if text.endswith("i"):
            raise self.error(t.pos, f"complex constant {t.text} is outside the supported subset")
        try:
            return int(text, 0) if not re.fullmatch(r"[+-]?0[0-7]+", text) else int(text, 8)
        except ValueError:
            raise self.error(t.pos, f"number {t.text}: only integer constants are supported") from None


# --- execution ---------------------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _is_struct(v: Any) -> bool:
    return isinstance(v, GoStruct)


def _type_name(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "slice"
    if isinstance(v, GoMap):
        return v.go_type
    if isinstance(v, GoStruct):
        return v.GO_TYPE
    return type(v).__name__


def truth(v: Any) -> bool:
    """Go's template truth: false, 0, nil and empty strings, slices and maps are false; structs are true."""
    if v is None:
        return False
    if isinstance(v, (bool, int)):
        return bool(v)
    if isinstance(v, (str, list)):
        return len(v) > 0
    if isinstance(v, GoMap):
        return len(v.items) > 0
    return True


def _sort_key(v: Any) -> Any:
    if isinstance(v, GoStruct):
        return v.go_sort_key()
    if isinstance(v, str):
        return v.encode("utf-8", "surrogatepass")  # Go compares strings byte-wise (a lone surrogate from data must not crash)
    return v


def _sorted_items(m: GoMap) -> list[tuple[Any, Any]]:
    return sorted(m.items.items(), key=lambda kv: _sort_key(kv[0]))


def format_v(v: Any, top: bool = True) -> str:
    """fmt's ``%v``: Stringers by String(), slices ``[a b]``, maps ``map[k:v]`` in sorted key order, structs ``{a b}``."""
    if v is None:
        return "<no value>" if top else "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, list):
        return "[" + " ".join(format_v(x, False) for x in v) + "]"
    if isinstance(v, GoMap):
        return "map[" + " ".join(f"{format_v(k, False)}:{format_v(x, False)}" for k, x in _sorted_items(v)) + "]"
    if isinstance(v, GoStruct):
        s = v.go_string()
        if s is not None:
            return s
        if isinstance(v, ObjectId):
            return v.go_v()
        return "{" + " ".join(format_v(v.go_field(f), False) for f in v.go_fields()) + "}"
    return str(v)


def go_quote(s: str) -> str:
    """strconv.Quote: printable runes kept, the rest escaped."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}[ch])
        elif ch.isprintable() and o != 0xFFFD:
            out.append(ch)
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)([0-9]+)?(?:\.([0-9]*))?(.)?", re.S)


def check_format(fmt: str) -> None:
    """Refuse a printf format with a verb or flag outside the subset."""
    for m in _VERB.finditer(fmt):
        flags, verb = m.group(1), m.group(4)
        if verb is None:
            raise ValueError("printf: format ends with a lone %")
        if verb == "%":
            continue
        if verb not in "vsdqtxX":
            raise ValueError(f"printf: verb %{verb} is outside the supported subset (%v %s %d %q %t %x %X %%)")
        if "#" in flags or ("+" in flags and verb in "vsq"):
            raise ValueError(f"printf: flag {'#' if '#' in flags else '+'} with %{verb} is outside the supported subset")


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    """fmt.Sprintf for the verbs %v %s %d %q %t %x %X %% with flags - + space 0 and width/precision."""
    out: list[str] = []
    i, n, size = 0, 0, 0
    while True:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        m = _VERB.match(fmt, j)
        assert m is not None
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        i = m.end()
        if verb is None:
            raise ValueError("printf: format ends with a lone %")
        if verb == "%":
            out.append("%")
            continue
        if verb not in "vsdqtxX":
            raise ValueError(f"printf: verb %{verb} is outside the supported subset (%v %s %d %q %t %x %X %%)")
        if "#" in flags or ("+" in flags and verb in "vsq"):
            raise ValueError(f"printf: flag {'#' if '#' in flags else '+'} with %{verb} is outside the supported subset")
        if n >= len(args):
            raise ValueError(f"printf: %{verb} has no argument (format has more verbs than arguments)")
        arg = args[n]
        n += 1
        out.append(_format_one(verb, flags, int(width) if width else None, prec, arg))
        size += len(out[-1])  # the literal text between verbs is bounded by the template's size
        _check_size(size)
    if n < len(args):
        raise ValueError(f"printf: {len(args) - n} argument(s) more than the format's verbs")
    return "".join(out)


def _format_one(verb: str, flags: str, width: int | None, prec: str | None, arg: Any) -> str:
    bad = ValueError(f"printf: %{verb} cannot format a {_type_name(arg)}")
    if verb == "d":
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise bad
        body = str(abs(arg))
        if prec:
            _check_size(int(prec))
            body = body.zfill(int(prec))
        sign = "-" if arg < 0 else "+" if "+" in flags else " " if " " in flags else ""
        return _pad(sign, body, flags, width, numeric=prec is None)
    if verb in "xX":
        if isinstance(arg, bool) or not isinstance(arg, (int, str)):
            raise bad
        body = format(abs(arg), "x") if isinstance(arg, int) else arg.encode("utf-8", "surrogatepass").hex()
        body = body.upper() if verb == "X" else body
        sign = "-" if isinstance(arg, int) and arg < 0 else ""
        return _pad(sign, body, flags, width, numeric=True)
    if verb == "t":
        if not isinstance(arg, bool):
            raise bad
        return _pad("", "true" if arg else "false", flags, width)
    if verb == "v":
        text = format_v(arg)
        if arg is None:
            text = "<nil>"
    else:  # s, q
        if isinstance(arg, str):
            text = arg
        elif isinstance(arg, GoStruct) and arg.go_string() is not None:
            text = arg.go_string() or ""
        elif verb == "s" and isinstance(arg, list) and all(isinstance(x, str) for x in arg):
            text = format_v(arg)
        else:
            raise bad
    if prec is not None and verb in "sqv":
        text = text[: int(prec or 0)]
    if verb == "q":
        text = go_quote(text)
    return _pad("", text, flags, width)


def _check_size(n: int) -> None:
    """Refuse a value before building it: a function result is bounded like the output."""
    if n > MAX_OUTPUT_BYTES:
        raise ValueError(f"result larger than {MAX_OUTPUT_BYTES} bytes: refused")


def _pad(sign: str, body: str, flags: str, width: int | None, *, numeric: bool = False) -> str:
    _check_size(width or 0)
    if width is None or len(sign) + len(body) >= width:
        return sign + body
    gap = width - len(sign) - len(body)
    if "-" in flags:
        return sign + body + " " * gap
    if "0" in flags and numeric:
        return sign + "0" * gap + body
    return " " * gap + sign + body


def _sprint(args: Sequence[Any], *, line: bool) -> str:
    out: list[str] = []
    size = 0
    for k, a in enumerate(args):
        if k and (line or (not isinstance(a, str) and not isinstance(args[k - 1], str))):
            out.append(" ")
        out.append(format_v(a, False) if a is not None else "<nil>")
        size += len(out[-1]) + 1
        _check_size(size)
    return "".join(out) + ("\n" if line else "")


def _eq_basic(a: Any, b: Any) -> bool:
    for v in (a, b):
        if isinstance(v, (list, GoMap)):
            raise ValueError(f"non-comparable type {_type_name(v)}")
    if a is None or b is None:
        return a is b
    both_ints = isinstance(a, int) and isinstance(b, int) and isinstance(a, bool) == isinstance(b, bool)
    if type(a) is not type(b) and not both_ints:
        raise ValueError(f"incompatible types for comparison: {_type_name(a)} and {_type_name(b)}")
    return bool(a == b)


def _less(a: Any, b: Any) -> bool:
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not ((isinstance(a, int) and isinstance(b, int)) or (isinstance(a, str) and isinstance(b, str)))
    ):
        raise ValueError(f"invalid type for comparison: {_type_name(a)} and {_type_name(b)}")
    return bool(_sort_key(a) < _sort_key(b))


def _need_str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{name}: wrong type for value; expected string; got {_type_name(v)}")
    return v


def _index(item: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(item, list):
            if isinstance(k, bool) or not isinstance(k, int):
                raise ValueError(f"cannot index slice with {_type_name(k)}")
            if not 0 <= k < len(item):
                raise ValueError(f"index out of range: {k}")
            item = item[k]
        elif isinstance(item, GoMap):
            if not isinstance(k, str) and not isinstance(k, GoStruct):
                raise ValueError(f"cannot index {item.go_type} with {_type_name(k)}")
            item = item.items.get(k, item.zero)
        else:
            raise ValueError(f"can't index item of type {_type_name(item)}")
    return item


def _length(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))  # Go's len counts bytes
    if isinstance(v, list):
        return len(v)
    if isinstance(v, GoMap):
        return len(v.items)
    raise ValueError(f"len of type {_type_name(v)}")


_PLAIN_FUNCS: dict[str, Callable[..., Any]] = {
    "not": lambda a: not truth(a),
    "len": _length,
    "print": lambda *a: _sprint(a, line=False),
    "println": lambda *a: _sprint(a, line=True),
    "printf": lambda f, *a: sprintf(_need_str("printf", f), a),
    "ne": lambda a, b: not _eq_basic(a, b),
    "lt": _less,
    "le": lambda a, b: _less(a, b) or _eq_basic(a, b),
    "gt": lambda a, b: not (_less(a, b) or _eq_basic(a, b)),
    "ge": lambda a, b: not _less(a, b),
    "index": _index,
    "lower": lambda s: _need_str("lower", s).lower(),
    "upper": lambda s: _need_str("upper", s).upper(),
    "trim": lambda s: _need_str("trim", s).strip(),
    "trimPrefix": lambda p, s: _need_str("trimPrefix", s).removeprefix(_need_str("trimPrefix", p)),
    "trimSuffix": lambda p, s: _need_str("trimSuffix", s).removesuffix(_need_str("trimSuffix", p)),
    "contains": lambda sub, s: _need_str("contains", sub) in _need_str("contains", s),
    "hasPrefix": lambda p, s: _need_str("hasPrefix", s).startswith(_need_str("hasPrefix", p)),
    "hasSuffix": lambda p, s: _need_str("hasSuffix", s).endswith(_need_str("hasSuffix", p)),
    "replace": lambda old, new, s: _replace(_need_str("replace", old), _need_str("replace", new), _need_str("replace", s)),
    "join": lambda sep, xs: _join(_need_str("join", sep), _need_list("join", xs)),
    "default": lambda d, *given: given[0] if given and truth(given[0]) else d,
}
_ARITY: dict[str, tuple[int, int]] = {
    "not": (1, 1), "len": (1, 1), "printf": (1, 1 << 30), "ne": (2, 2), "lt": (2, 2), "le": (2, 2), "gt": (2, 2),
    "ge": (2, 2), "index": (1, 1 << 30), "lower": (1, 1), "upper": (1, 1), "trim": (1, 1), "trimPrefix": (2, 2),
    "trimSuffix": (2, 2), "contains": (2, 2), "hasPrefix": (2, 2), "hasSuffix": (2, 2), "replace": (3, 3),
    "join": (2, 2), "default": (1, 2), "and": (1, 1 << 30), "or": (1, 1 << 30), "eq": (1, 1 << 30),
    "print": (0, 1 << 30), "println": (0, 1 << 30),
}  # fmt: skip


def _replace(old: str, new: str, s: str) -> str:
    _check_size(len(s) + (s.count(old) if old else len(s) + 1) * max(0, len(new) - len(old)))
    return s.replace(old, new)


def _join(sep: str, xs: list[Any]) -> str:
    parts = [format_v(x, False) for x in xs]
    _check_size(sum(map(len, parts)) + len(sep) * max(0, len(parts) - 1))
    return sep.join(parts)


def _need_list(name: str, v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise ValueError(f"{name}: expected a list, got {_type_name(v)}")
    return v


class _Exec:
    def __init__(self, lex: _Lexer, data: Any) -> None:
        self.lex = lex
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.vars: list[list[Any]] = [["$", data]]

    def error(self, pos: int, message: str) -> TemplateError:
        return self.lex.error(pos, message)

    def step(self, pos: int) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self.error(pos, f"rendering took more than {MAX_STEPS} steps: refused")

    def emit(self, text: str, pos: int) -> None:
        self.size += len(text.encode("utf-8", "surrogatepass"))
        if self.size > MAX_OUTPUT_BYTES:
            raise self.error(pos, f"output larger than {MAX_OUTPUT_BYTES} bytes: refused")
        self.out.append(text)

    def walk(self, dot: Any, nodes: Sequence[Any]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                self.emit(node.text, 0)
            elif isinstance(node, Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.emit(format_v(value), node.pipe.pos)
            elif isinstance(node, Control):
                self.control(dot, node)
            else:
                raise _Break() if node.kind == "break" else _Continue()

    def control(self, dot: Any, node: Control) -> None:
        self.step(node.pos)
        mark = len(self.vars)
        try:
            value = self.pipeline(dot, node.pipe)
            if node.kind == "if":
                self.walk(dot, node.body if truth(value) else node.orelse)
            elif node.kind == "with":
                if truth(value):
                    self.walk(value, node.body)
                else:
                    self.walk(dot, node.orelse)
            else:
                self.range(dot, node, value)
        finally:
            del self.vars[mark:]

    def range(self, dot: Any, node: Control, value: Any) -> None:
        pairs: Iterator[tuple[Any, Any]]
        if isinstance(value, list):
            pairs = iter(list(enumerate(value)))
        elif isinstance(value, GoMap):
            pairs = iter(_sorted_items(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decl) > 1:
                raise self.error(node.pos, "can't use range over an integer with two variables")
            pairs = ((i, i) for i in range(max(0, value)))
        elif value is None:
            pairs = iter(())
        else:
            raise self.error(node.pos, f"range can't iterate over {_type_name(value)}")
        decl = node.pipe.decl
        ran = False
        for key, elem in pairs:
            ran = True
            self.step(node.pos)
            if decl:
                if len(decl) == 1:
                    self.set_var(decl[0], elem, node.pipe.assign)
                else:
                    self.set_var(decl[0], key, node.pipe.assign)
                    self.set_var(decl[1], elem, node.pipe.assign)
            mark = len(self.vars)
            try:
                self.walk(elem, node.body)
            except _Break:
                break
            except _Continue:
                pass
            finally:
                del self.vars[mark:]
        if not ran:
            self.walk(dot, node.orelse)

    def set_var(self, name: str, value: Any, assign: bool) -> None:
        for slot in reversed(self.vars):
            if slot[0] == name:
                slot[1] = value
                return
        self.vars.append([name, value])  # pragma: no cover - the parser declared it

    def pipeline(self, dot: Any, pipe: Pipeline) -> Any:
        value: Any = _NOFINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if pipe.decl:
            if pipe.assign:
                self.set_var(pipe.decl[0], value, True)
            else:
                for name in pipe.decl:
                    self.vars.append([name, value])
        return value

    def command(self, dot: Any, cmd: Command, final: Any) -> Any:
        self.step(cmd.pos)
        first = cmd.args[0]
        if isinstance(first, Func):
            return self.call(dot, first, cmd.args[1:], final)
        if isinstance(first, Chain) and (len(cmd.args) > 1 or final is not _NOFINAL):
            raise self.error(first.pos, f"{'.' + '.'.join(first.fields)} takes no arguments")
        if len(cmd.args) > 1 or final is not _NOFINAL:
            raise self.error(cmd.pos, "can't give argument to non-function")
        return self.arg(dot, first)

    def arg(self, dot: Any, node: Any) -> Any:
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Var):
            for name, value in reversed(self.vars):
                if name == node.name:
                    return value
            raise self.error(node.pos, f"undefined variable {node.name!r}")  # pragma: no cover
        if isinstance(node, Pipeline):
            return self.pipeline(dot, node)
        if isinstance(node, Chain):
            value = self.arg(dot, node.base)
            for name in node.fields:
                value = self.field(value, name, node.pos)
            return value
        if isinstance(node, Func):
            return self.call(dot, node, (), _NOFINAL)
        raise AssertionError(node)  # pragma: no cover

    def field(self, value: Any, name: str, pos: int) -> Any:
        self.step(pos)
        if isinstance(value, GoMap):
            if not value.items or all(isinstance(k, str) for k in value.items):
                return value.items.get(name, value.zero)
            raise self.error(pos, f"can't evaluate field {name} in {value.go_type} with non-string keys")
        if isinstance(value, GoStruct):
            try:
                if name in value.FIELDS:  # go_field explains a field this version removed
                    return value.go_field(name)
                if name in value.METHODS:
                    return value.go_method(name)
            except _Unknown as exc:
                raise self.error(pos, str(exc)) from None
            known = ", ".join(value.go_fields() + value.METHODS)
            raise self.error(pos, f"can't evaluate field {name} in type {value.GO_TYPE} (it has: {known})")
        if value is None:
            raise self.error(pos, f"nil pointer evaluating .{name}")
        raise self.error(pos, f"can't evaluate field {name} in type {_type_name(value)}")

    def call(self, dot: Any, fn: Func, argnodes: Sequence[Any], final: Any) -> Any:
        count = len(argnodes) + (final is not _NOFINAL)
        low, high = _ARITY[fn.name]
        if not low <= count <= high:
            want = str(low) if low == high else f"at least {low}"
            raise self.error(fn.pos, f"wrong number of args for {fn.name}: want {want} got {count}")
        if fn.name in ("and", "or"):  # short-circuit, returning the deciding argument (Go 1.18)
            value: Any = None
            nodes = list(argnodes)
            for k in range(count):
                value = self.arg(dot, nodes[k]) if k < len(nodes) else final
                if truth(value) != (fn.name == "and"):
                    return value
            return value
        args = [self.arg(dot, a) for a in argnodes] + ([final] if final is not _NOFINAL else [])
        try:
            if fn.name == "eq":
                if len(args) < 2:
                    raise ValueError("missing argument for comparison")
                return any(_eq_basic(args[0], b) for b in args[1:])
            return _PLAIN_FUNCS[fn.name](*args)
        except ValueError as exc:
            raise self.error(fn.pos, f"error calling {fn.name}: {exc}") from None


_NOFINAL = object()  # "no piped value": distinct from nil


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: ``render(data)`` any number of times."""

    source: str
    name: str
    tree: tuple[Any, ...]

    def render(self, data: Any) -> str:
        ex = _Exec(_Lexer(self.source, self.name), data)
        try:
            ex.walk(data, self.tree)
        except RecursionError:
            raise TemplateError(f"{self.name}: nesting too deep to render") from None
        return "".join(ex.out)


def parse(source: str, name: str = "messageTemplate") -> Template:
    """Parse ``source``; anything outside the subset is a :class:`TemplateError` with line and column."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"{name}: template larger than {MAX_TEMPLATE_BYTES} bytes: refused")
    try:
        return Template(source, name, _Parser(source, name).parse())
    except RecursionError:
        raise TemplateError(f"{name}: nesting too deep") from None


def check(source: str, name: str = "messageTemplate", api_version: str = ApiVersion.V1) -> Template:
    """Parse, then render over :func:`sample_data` so a field the data lacks fails at load, not at commit time."""
    template = parse(source, name)
    template.render(sample_data(api_version))
    return template


def render(source: str, data: TemplateData, name: str = "messageTemplate") -> str:
    """The commit message for ``data``; an empty template renders Flux's default message."""
    if not source:
        return DEFAULT_MESSAGE
    return parse(source, name).render(data)


__all__ = [
    "DEFAULT_MESSAGE",
    "MAX_DEPTH",
    "MAX_OUTPUT_BYTES",
    "MAX_STEPS",
    "MAX_TEMPLATE_BYTES",
    "SUPPORTED_FUNCTIONS",
    "ApiVersion",
    "ChangeRecord",
    "GoMessage",
    "ObjectId",
    "Template",
    "TemplateData",
    "TemplateError",
    "check",
    "format_v",
    "go_quote",
    "parse",
    "render",
    "sample_data",
    "sprintf",
    "template_data",
    "truth",
]
