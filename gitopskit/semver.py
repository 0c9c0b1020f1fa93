"""Semver ranges in Masterminds/semver v3 constraint syntax (the syntax Flux uses), shared by imagebot's
``semver`` policy and the reconciler's GitRepository ``ref.semver`` (pure).

Grammar: OR-sets separated by ``||``; inside a set, comparators separated by spaces or
commas; hyphen ranges ``A - B`` mean ``>= A, <= B``. Operators ``=`` (or none), ``!=``, ``>``,
``<``, ``>=`` (``=>``), ``<=`` (``=<``), ``~`` (``~>``), ``^``. Versions in a range may be
partial (``1``, ``1.2``) or carry wildcards ``x``, ``X``, ``*``, with an optional ``v``.
The comparison rules for partial versions are Masterminds' (``>1.1`` means ``>=1.2.0``,
``<=2`` admits every ``2.x.y``, ``~1.2`` is ``>=1.2.0 <1.3.0``, ``^0.2`` is ``>=0.2.0 <0.3.0``).

Tags are strict semver (``MAJOR.MINOR.PATCH[-pre][+build]``) with an optional leading ``v``.
A pre-release tag is admitted only when a comparator in the same OR-set carries a
pre-release (``>=1.0.0-0`` admits them, ``>=1.0.0`` does not). Build metadata never
decides order. Versions of range bounds are parsed with the ``semver`` package; tags use
a compiled parser, because parsing 100,000 tags must take milliseconds. Property tests
(tests/unit/policy/test_properties.py) check — by sampling, not proof — that on ASCII tags it
accepts exactly what ``semver.Version.parse`` accepts and orders the same way, and that it
rejects every tag with a non-ASCII character, where the package's Unicode-wide ``\\d`` would
read '1.2.1\\u0660' as 1.2.10.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import semver as _semver

from gitopskit.errors import KitError


class RangeError(KitError, ValueError):
    """A semver range that cannot be read; the message names the bad part."""


# A version key: (major, minor, patch, is_release, prerelease identifiers) — tuples compare
# exactly as semver 2.0 precedence (numeric identifiers < alphanumeric, shorter < longer).
Key = tuple[int, int, int, int, tuple[tuple[int, Any], ...]]

# Explicit ASCII classes: ``\d`` and ``str.isdigit`` accept any Unicode digit ('1.2.1\u0660' would
# read as 1.2.10), and tags come from registries.
_NUM = r"0|[1-9][0-9]*"
_IDENT = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_TAG_RE = re.compile(
    rf"v?({_NUM})\.({_NUM})\.({_NUM})(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?", re.ASCII
)
_NUMERIC_IDENT = re.compile(r"[0-9]+", re.ASCII)


def _pre_key(pre: str) -> tuple[tuple[int, Any], ...]:
    return tuple((0, int(p)) if _NUMERIC_IDENT.fullmatch(p) else (1, p) for p in pre.split("."))


@functools.lru_cache(maxsize=1 << 16)  # a repository's tags are judged again every pass (and twice in one: select, why)
def parse_tag(tag: str) -> Key | None:
    """The precedence key of a strict semver tag (optional leading ``v``), or None."""
    m = _TAG_RE.fullmatch(tag)
    if m is None:
        return None
    major, minor, patch, pre = m.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    return (int(major), int(minor), int(patch), 0, _pre_key(pre))


def _key_of(v: _semver.Version) -> Key:
    if v.prerelease:
        return (v.major, v.minor, v.patch, 0, _pre_key(v.prerelease))
    return (v.major, v.minor, v.patch, 1, ())


_OPS = ("!=", ">=", "=>", "<=", "=<", "~>", ">", "<", "=", "~", "^", "")
_OPS_RE = "|".join(re.escape(o) for o in _OPS[:-1]) + "|"
_CV = (
    r"v?([0-9xX*]+)(\.[0-9xX*]+)?(\.[0-9xX*]+)?"
    r"(-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_CONSTRAINT_RE = re.compile(rf"\s*({_OPS_RE})\s*({_CV})\s*", re.ASCII)
_FIND_RE = re.compile(rf"({_OPS_RE})\s*({_CV})", re.ASCII)
_SET_RE = re.compile(rf"^\s*(?:{_OPS_RE})\s*{_CV}\s*(?:(?:\s+|,\s*)(?:{_OPS_RE})\s*{_CV}\s*)*\Z", re.ASCII)
_RANGE_CV = (
    r"v?[0-9xX*]+(?:\.[0-9xX*]+)?(?:\.[0-9xX*]+)?"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_HYPHEN_RE = re.compile(rf"\s*({_RANGE_CV})\s+-\s+({_RANGE_CV})\s*", re.ASCII)
_CANON = {"=>": ">=", "=<": "<=", "~>": "~", "": "="}


def _is_x(part: str | None) -> bool:
    return part is not None and part.lstrip(".") in ("x", "X", "*")


@dataclass(frozen=True, slots=True)
class Comparator:
    """One comparator of a range, e.g. ``>=1.2`` (text as written)."""

    text: str
    op: str  # canonical: = != > < >= <= ~ ^
    key: Key
    dirty: bool  # some part was missing or a wildcard
    minor_dirty: bool
    patch_dirty: bool
    any_major: bool  # the major itself was a wildcard

    @property
    def has_pre(self) -> bool:
        return self.key[3] == 0

    def check(self, v: Key) -> bool:
        """Whether ``v`` satisfies this comparator (Masterminds semantics for partial versions)."""
        c = self.key
        op = self.op
        if op == ">=":
            return v >= c
        if op == "<":
            return v < c
        if op == "=":
            return self._tilde(v) if self.dirty else v == c
        if op == "~":
            return self._tilde(v)
        if op == "^":
            return self._caret(v)
        if op == "!=":
            return self._not_equal(v)
        if op == ">":
            if not self.dirty or self.any_major or v[0] > c[0]:
                return v > c
            if v[0] < c[0] or self.minor_dirty:
                return False
            return v[1] > c[1] if self.patch_dirty else v > c
        # "<="
        if not self.dirty:
            return v <= c
        if self.any_major:
            return True
        return not (v[0] > c[0] or (v[0] == c[0] and v[1] > c[1] and not self.minor_dirty))

    def _tilde(self, v: Key) -> bool:
        c = self.key
        if self.any_major:
            return True
        if v < c:
            return False
        if c[:3] == (0, 0, 0) and not self.minor_dirty and not self.patch_dirty:
            return True
        return v[0] == c[0] and (v[1] == c[1] or self.minor_dirty)

    def _caret(self, v: Key) -> bool:
        c = self.key
        if self.any_major:
            return True
        if v < c:
            return False
        if c[0] > 0 or self.minor_dirty:
            return v[0] == c[0]
        if v[0] > 0:
            return False
        if c[1] > 0 or self.patch_dirty:
            return v[1] == c[1]
        return v[1] == 0 and v[2] == c[2]

    def _not_equal(self, v: Key) -> bool:
        c = self.key
        if self.dirty:
            if self.any_major:
                return False
            if c[0] != v[0]:
                return True
            if self.minor_dirty:
                return False
            if c[1] != v[1]:
                return True
            if self.patch_dirty:
                return (v[3], v[4]) != (c[3], c[4]) and (v[3] == 0 or c[3] == 0)
        return v != c


def _parse_comparator(text: str, whole: str) -> Comparator:
    m = _CONSTRAINT_RE.fullmatch(text)
    if m is None:
        raise RangeError(f"invalid semver range {whole!r}: cannot read comparator {text.strip()!r}")
    op = _CANON.get(m.group(1), m.group(1))
    major, minor, patch, pre = m.group(3), m.group(4), m.group(5), m.group(6) or ""
    any_major = _is_x(major)
    minor_dirty = patch_dirty = False
    if any_major:
        ver = "0.0.0" + pre
    elif minor is None or _is_x(minor):
        minor_dirty = True
        ver = f"{major}.0.0{pre}"
    elif patch is None or _is_x(patch):
        patch_dirty = True
        ver = f"{major}{minor}.0{pre}"
    else:
        ver = f"{major}{minor}{patch}{pre}"
    if any(ch in ver.split("-")[0] for ch in "xX*"):
        raise RangeError(f"invalid semver range {whole!r}: wildcard in the middle of {m.group(2)!r}")
    try:
        version = _semver.Version.parse(ver)
    except ValueError:
        raise RangeError(f"invalid semver range {whole!r}: {m.group(2)!r} is not a version (leading zeros?)") from None
    return Comparator(
        text=(m.group(1) + m.group(2)),
        op=op,
        key=_key_of(version),
        dirty=any_major or minor_dirty or patch_dirty,
        minor_dirty=minor_dirty,
        patch_dirty=patch_dirty,
        any_major=any_major,
    )


def parse_range(text: str) -> tuple[tuple[Comparator, ...], ...]:
    """Parse a range into OR-sets of AND-ed comparators, or raise RangeError naming the bad part."""
    if not text.strip():
        raise RangeError("empty semver range: give one, e.g. '>=1.0.0' or '*' for any release")
    rewritten = _HYPHEN_RE.sub(lambda m: f" >= {m.group(1)}, <= {m.group(2)} ", text)
    sets = []
    for part in rewritten.split("||"):
        if not part.strip():
            raise RangeError(f"invalid semver range {text!r}: empty alternative around '||'")
        if not _SET_RE.match(part):
            raise RangeError(f"invalid semver range {text!r}: cannot read {part.strip()!r}")
        sets.append(tuple(_parse_comparator(m.group(0), text) for m in _FIND_RE.finditer(part)))
    return tuple(sets)


def pick(range_: str, tags: list[str]) -> str | None:
    """The highest tag inside ``range_`` (pre-releases only when a comparator of their alternative carries one, as
    Masterminds and Flux do), or None. RangeError when the range cannot be read."""
    sets = parse_range(range_)
    best: tuple[Key, str] | None = None
    for tag in tags:
        v = parse_tag(tag)
        if v is None:
            continue
        for s in sets:
            if v[3] == 0 and not any(c.has_pre for c in s):
                continue
            if all(c.check(v) for c in s):
                if best is None or v > best[0]:
                    best = (v, tag)
                break
    return best[1] if best is not None else None
