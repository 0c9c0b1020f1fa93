"""Typed reading of configuration mappings (pure): every value checked where it enters, every problem collected.

Shared by the native loader (``load.py``) and the Flux object translation (``flux.py``): a :class:`Reader`
over one mapping records a problem (file, line, field, message) instead of raising, so one pass reports
everything wrong at once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from imagebot.config.yamlload import Map, line_of
from imagebot.errors import ImagebotError
from imagebot.policy import PolicyKind, PolicySpec, build

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")
MISSING = object()


def parse_duration(text: Any) -> float:
    """Go-style durations: 1h30m, 5m, 10s, 250ms; a bare number is seconds. Never negative, NaN or infinite."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"invalid duration {text!r}: must be a finite number of seconds, not negative")
        return float(text)
    m = _DURATION.match(text.strip()) if isinstance(text, str) and text.strip() else None
    if not m or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h30m)")
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def positive_duration(text: Any) -> float:
    """A duration that paces a loop: zero would spin it."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return seconds


class Sink(Protocol):
    """Where a :class:`Reader` records a problem."""

    def add(self, file: str, node: Any, key: Any, where: str, message: str) -> None: ...


@dataclass
class Errors:
    """Problems as ``file:line: field: message`` lines."""

    items: list[str] = field(default_factory=list)

    def add(self, file: str, node: Any, key: Any, where: str, message: str) -> None:
        line = line_of(node, key)
        self.items.append(f"{file}:{line if line else '?'}: {where}: {message}")


def _type_names(kind: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "dict": "a mapping"}
    return " or ".join(names.get(t.__name__, f"a {t.__name__}") for t in (kind if isinstance(kind, tuple) else (kind,)))


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, kinds)


class Reader:
    """Typed access to one mapping, recording errors instead of raising.

    Every value is type-checked where it is read, so nothing downstream meets a list where it
    expects a string; ``allowed=None`` accepts any key (Kubernetes metadata).
    """

    def __init__(self, errors: Sink, file: str, node: Any, where: str, allowed: set[str] | None) -> None:
        self.e, self.file, self.node, self.where = errors, file, node, where
        if not isinstance(node, dict):
            errors.add(file, node, None, where, f"must be a mapping, not {shown(node)}")
            self.node = Map()
            return
        if allowed is None:
            return
        for k in node:
            if k not in allowed:
                errors.add(file, node, k, f"{where}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def error(self, key: str | None, message: str) -> None:
        self.e.add(self.file, self.node, key, f"{self.where}.{key}" if key is not None else self.where, message)

    def has(self, key: str) -> bool:
        return key in self.node

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.node:
            if required:
                self.e.add(self.file, self.node, None, f"{self.where}.{key}", "required")
            return default
        v = self.node[key]
        if not _is(v, kind):
            self.error(key, f"must be {_type_names(kind)}, not {shown(v)}")
            return default
        return v

    def text(self, key: str, default: Any = None, required: bool = False) -> Any:
        """A non-empty string."""
        v = self.get(key, str, MISSING, required)
        if v is MISSING:
            return default
        if not v.strip():
            self.error(key, "must not be empty")
            return default
        return v

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        items = self.get(key, list, None)
        if items is None:
            return default
        bad = [i for i, v in enumerate(items) if not isinstance(v, str)]
        for i in bad:
            self.e.add(self.file, items, i, f"{self.where}.{key}[{i}]", f"must be a string, not {shown(items[i])}")
        return default if bad else tuple(items)

    def sub(self, key: str, allowed: set[str] | None, required: bool = False) -> Reader:
        """The mapping under ``key`` (an empty one when absent)."""
        if key not in self.node:
            if required:
                self.e.add(self.file, self.node, None, f"{self.where}.{key}", "required")
            return Reader(self.e, self.file, Map(), f"{self.where}.{key}", allowed)
        node = self.node[key]
        if not isinstance(node, dict):
            self.error(key, f"must be a mapping, not {shown(node)}")
            node = Map()
        return Reader(self.e, self.file, node, f"{self.where}.{key}", allowed)

    def check(self, key: str, fn: Callable[[Any], Any], default: Any = None, required: bool = False) -> Any:
        if key in self.node and isinstance(self.node[key], float):
            raw = self.node[key]  # NaN and infinities too: ``fn`` says why they are wrong
        else:
            raw = self.get(key, (str, int), MISSING, required)
        if raw is MISSING:
            return default
        try:
            return fn(raw)
        except (ValueError, ImagebotError) as exc:
            self.error(key, str(exc))
            return default

    def parsed(self, key: str, fn: Callable[[str], Any], required: bool = False) -> Any:
        """A string turned into a value by ``fn``; its error becomes this field's."""
        raw = self.text(key, required=required)
        if raw is None:
            return None
        try:
            return fn(raw)
        except (ValueError, ImagebotError) as exc:
            self.error(key, str(exc))
            return None

    def duration(self, key: str, default: float, *, positive: bool) -> float:
        return float(self.check(key, positive_duration if positive else parse_duration, default))

    def choice(self, key: str, enum: type[Enum], default: Any = None) -> Any:
        raw = self.get(key, str, MISSING)
        if raw is MISSING:
            return default
        try:
            return enum(raw)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum)
            self.error(key, f"{raw!r} is not one of the allowed values: {allowed}")
            return default

    def number(self, key: str, kind: type, default: Any = None, *, minimum: float = 0, above: bool = True) -> Any:
        """An int or finite number, greater than ``minimum`` (or at least it when ``above`` is false)."""
        v = self.get(key, (int,) if kind is int else (int, float), MISSING)
        if v is MISSING:
            return default
        if v < minimum or (above and v == minimum):
            self.error(key, f"must be {'greater than' if above else 'at least'} {minimum}, not {v}")
            return default
        return v

    def existing(self, key: str, *, directory: bool = False, check: bool = True) -> Path | None:
        """A path that must exist and be readable when the bot runs (checked unless ``check`` is false)."""
        raw = self.text(key)
        if raw is None:
            return None
        path = Path(raw)
        if check:
            what = "directory" if directory else "file"
            if not (path.is_dir() if directory else path.is_file()):
                self.error(key, f"{what} {raw} does not exist{' or is not a ' + what if path.exists() else ''}")
            elif not os.access(path, os.R_OK | (os.X_OK if directory else 0)):
                self.error(key, f"{what} {raw} is not readable")
        return path


def shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def policy_spec(r: Reader, node: Any, where: str, excludes: tuple[str, ...]) -> PolicySpec | None:
    p = Reader(r.e, r.file, node, where, {"semver", "numerical", "alphabetical", "pattern", "extract", "exclude"})
    kinds = [k for k in ("semver", "numerical", "alphabetical") if k in p.node]
    if len(kinds) != 1:
        p.error(None, "give exactly one of semver, numerical, alphabetical")
        return None
    kind = PolicyKind(kinds[0])
    arg = p.text(kinds[0])
    pattern, extract, more = p.text("pattern"), p.get("extract", str, ""), p.strings("exclude")
    if arg is None:
        return None
    spec = PolicySpec(kind, arg, pattern, extract, excludes + more)
    try:
        build(spec)
    except ImagebotError as exc:
        p.error(kinds[0], str(exc))
        return None
    return spec
