"""imagebot's own settings on a Flux ImagePolicy, as annotations (Flux's schema stays as it is) — pure: no I/O.

One reading for both modes: ``imagebot controller`` and file mode (``imagebot config validate`` / ``run`` on Flux
files) validate the same annotations with the same messages. The settings are the native config's environment
guards (``imagebot.runtime.decide`` applies them in both modes):

- ``imagebot.dev/promote-from: NAME`` (an ImagePolicy of the same namespace) + ``imagebot.dev/soak: 24h``
- ``imagebot.dev/min-age: 2h``, ``imagebot.dev/allow-downgrade: "true"``
- ``imagebot.dev/hold: REASON`` (+ ``imagebot.dev/hold-tag: TAG`` to pin a tag), ``imagebot.dev/approve: TAG``

The controller also writes two annotations of its own (``latest-since``, ``first-seen``): validated here too, so
a hand-edited value is a clear error rather than a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagebot.config.fields import parse_duration
from imagebot.errors import ConfigError
from imagebot.refs import valid_tag

PREFIX = "imagebot.dev/"
PROMOTE_FROM = "imagebot.dev/promote-from"
SOAK = "imagebot.dev/soak"
MIN_AGE = "imagebot.dev/min-age"
ALLOW_DOWNGRADE = "imagebot.dev/allow-downgrade"
HOLD = "imagebot.dev/hold"
HOLD_TAG = "imagebot.dev/hold-tag"
APPROVE = "imagebot.dev/approve"
SETTINGS = (PROMOTE_FROM, SOAK, MIN_AGE, ALLOW_DOWNGRADE, HOLD, HOLD_TAG, APPROVE)
# written by the controller (kept in the cluster so a restart or a second replica sees the same times)
LATEST_SINCE = "imagebot.dev/latest-since"
FIRST_SEEN = "imagebot.dev/first-seen"
WRITTEN = (LATEST_SINCE, FIRST_SEEN)
COSIGN_SECRET = "imagebot.dev/cosign-secret"  # the signature gate's (read by the controller's _signed_tag)
OTHERS = (COSIGN_SECRET,)

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # DNS-1123 subdomain


class ExtrasError(ConfigError):
    """One annotation's value is not valid: the message names it (``metadata.annotations[KEY]: …``)."""

    def __init__(self, annotation: str, message: str) -> None:
        super().__init__(f"metadata.annotations[{annotation}]: {message}")
        self.annotation = annotation


@dataclass(frozen=True, slots=True)
class Extras:
    promote_from: str | None = None
    soak_seconds: float = 0.0
    min_age_seconds: float = 0.0
    allow_downgrade: bool = False  # the native config's default: a lower tag is refused
    hold: str | None = None  # the reason ("" when none was given); None: not held
    hold_tag: str | None = None  # held at exactly this tag
    approve: str | None = None  # this tag skips the rest of its soak

    @property
    def held(self) -> bool:
        return self.hold is not None


def _duration(annotations: Mapping[str, Any], key: str) -> float:
    try:
        return parse_duration(annotations[key])
    except ValueError as exc:
        raise ExtrasError(key, str(exc)) from None


def _tag(annotations: Mapping[str, Any], key: str) -> str:
    value = annotations[key]
    if not valid_tag(value):
        raise ExtrasError(key, f"{value!r} is not a valid image tag")
    return str(value)


def parse(annotations: Any, name: str = "") -> Extras:
    """The settings an ImagePolicy's annotations give (``name``: the policy's own, which it may not promote from).
    Raises ExtrasError naming the first bad annotation; an unknown ``imagebot.dev/`` key is an error too (a typo
    must not silently drop a guard)."""
    if not isinstance(annotations, Mapping):
        return Extras()
    ours = {k: v for k, v in annotations.items() if isinstance(k, str) and k.startswith(PREFIX)}
    for key, value in sorted(ours.items()):
        if key not in SETTINGS and key not in WRITTEN and key not in OTHERS:
            raise ExtrasError(key, f"unknown imagebot annotation on an ImagePolicy (known: {', '.join(SETTINGS + OTHERS)})")
        if not isinstance(value, str):
            raise ExtrasError(key, "must be a string")
    promote = ours.get(PROMOTE_FROM)
    if promote is not None:
        promote = promote.strip()
        if len(promote) > 253 or not _NAME.fullmatch(promote):
            raise ExtrasError(PROMOTE_FROM, f"{promote!r} is not an ImagePolicy name")
        if promote == name:
            raise ExtrasError(PROMOTE_FROM, "an ImagePolicy cannot promote from itself")
    soak = _duration(ours, SOAK) if SOAK in ours else 0.0
    if SOAK in ours and promote is None:
        raise ExtrasError(SOAK, f"needs {PROMOTE_FROM} (the policy whose tag soaks)")
    min_age = _duration(ours, MIN_AGE) if MIN_AGE in ours else 0.0
    if MIN_AGE in ours and promote is not None:
        raise ExtrasError(MIN_AGE, f"not with {PROMOTE_FROM}: a promotion takes its source's tag (give the source a min-age)")
    downgrade = ours.get(ALLOW_DOWNGRADE, "false").strip().lower()
    if downgrade not in ("true", "false"):
        raise ExtrasError(ALLOW_DOWNGRADE, f'{downgrade!r}: use "true" or "false"')
    hold = ours.get(HOLD)
    hold_tag = _tag(ours, HOLD_TAG) if HOLD_TAG in ours else None
    if hold_tag is not None and hold is None:
        raise ExtrasError(HOLD_TAG, f"needs {HOLD} (the reason for holding)")
    approve = _tag(ours, APPROVE) if APPROVE in ours else None
    if approve is not None and promote is None:
        raise ExtrasError(APPROVE, f"needs {PROMOTE_FROM} (an approval skips the rest of a soak)")
    return Extras(promote, soak, min_age, downgrade == "true", hold.strip() if hold is not None else None, hold_tag, approve)
