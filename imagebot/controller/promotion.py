"""An ImagePolicy's tag with imagebot's guards (promotion + soak, minimum age, downgrade guard, hold) — pure.

The decision is file mode's own (:func:`imagebot.runtime.decide.decide`): this module only maps the policy's
annotations, its repository's tags, its current ``latestRef`` and the times the controller keeps in the cluster
onto decide's inputs, and its answer back. The times live in annotations the controller writes, because a
restarted controller or a second replica must see the same soak and the same ages (Flux's CRDs prune unknown
status fields):

- ``imagebot.dev/latest-since`` on a policy others promote from: ``[{"tag", "digest", "since"}, …]``, the last
  ``HISTORY`` latestRefs it had and since when (RFC 3339, UTC);
- ``imagebot.dev/first-seen`` on a policy with a minimum age: ``{tag: since}`` for the tags that rank above its
  ``latestRef`` (those a minimum age can still hold back), at most ``FIRST_SEEN_MAX`` of them, the highest ranked.
  A tag is as old as the first reconcile that saw it — file mode's "first seen by the scanner", never the image's
  creation time; a tag not recorded (a restart lost nothing: it was written) counts as seen now.
"""

from __future__ import annotations

import calendar
import functools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from imagebot.config.fluxextras import FIRST_SEEN, LATEST_SINCE, Extras, ExtrasError
from imagebot.config.model import Environment, Target
from imagebot.policy import PolicySpec, build
from imagebot.refs import valid_tag
from imagebot.runtime.decide import Approval, Current, Overrides, decide

HISTORY = 10
FIRST_SEEN_MAX = 50
_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class Why(StrEnum):
    """The condition reasons of a policy whose tag does not move (Ready stays True while it has a latestRef)."""

    SOAKING = "PromotionSoaking"
    NOTHING_TO_PROMOTE = "NothingToPromote"
    MIN_AGE = "MinimumAgeNotReached"
    HELD = "Held"
    DOWNGRADE = "DowngradeRefused"


def rfc3339(t: float) -> str:
    return time.strftime(_FORMAT, time.gmtime(t))


def _time(text: Any, key: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(str(text), _FORMAT)))
    except ValueError:
        raise ExtrasError(key, f"{text!r} is not a time like 2026-01-31T12:00:00Z") from None


@dataclass(frozen=True, slots=True)
class Since:
    tag: str
    digest: str
    since: float


def read_history(annotations: Mapping[str, Any]) -> tuple[Since, ...]:
    raw = annotations.get(LATEST_SINCE)
    if raw is None:
        return ()
    try:
        items = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        raise ExtrasError(LATEST_SINCE, "not JSON (a list of {tag, digest, since})") from None
    if not isinstance(items, list):
        raise ExtrasError(LATEST_SINCE, "not a list of {tag, digest, since}")
    out = []
    for item in items[-HISTORY:]:
        if not isinstance(item, dict) or not isinstance(item.get("tag"), str) or not valid_tag(item["tag"]):
            raise ExtrasError(LATEST_SINCE, f"{item!r}: each entry needs a valid tag")
        out.append(Since(item["tag"], str(item.get("digest") or ""), _time(item.get("since"), LATEST_SINCE)))
    return tuple(out)


def since_of(history: Sequence[Since], tag: str, digest: str) -> float | None:
    """Since when the policy has had this latestRef (its last entry, when that is this tag and digest)."""
    if history and history[-1].tag == tag and history[-1].digest == digest:
        return history[-1].since
    return None


def with_entry(history: Sequence[Since], tag: str, digest: str, now: float) -> str:
    """The annotation's value with ``tag`` as the latestRef since ``now`` (bounded to the last HISTORY)."""
    items = [*history, Since(tag, digest, now)][-HISTORY:]
    return json.dumps([{"tag": s.tag, "digest": s.digest, "since": rfc3339(s.since)} for s in items], separators=(",", ":"))


def read_first_seen(annotations: Mapping[str, Any]) -> dict[str, float]:
    raw = annotations.get(FIRST_SEEN)
    if raw is None:
        return {}
    try:
        items = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        raise ExtrasError(FIRST_SEEN, "not JSON (an object {tag: since})") from None
    if not isinstance(items, dict) or not all(isinstance(k, str) and valid_tag(k) for k in items):
        raise ExtrasError(FIRST_SEEN, "not an object {tag: since}")
    return {k: _time(v, FIRST_SEEN) for k, v in items.items()}


def dump_first_seen(seen: Mapping[str, float]) -> str:
    return json.dumps({t: rfc3339(s) for t, s in sorted(seen.items())}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Source:
    """The ImagePolicy promoted from: its latestRef and since when it has had it."""

    name: str
    tag: str | None
    digest: str
    since: float


@dataclass(frozen=True, slots=True)
class Choice:
    tag: str | None  # the latestRef to write; None: keep the current one (or none yet)
    digest: str  # a promotion: exactly the source's digest ("" when it has none)
    why: Why | None  # set when a newer tag waits or is refused
    message: str  # decide's sentence, for the condition and the Event
    remaining: float = 0.0  # seconds until a waiting tag may move (requeue then)
    pending: str | None = None  # the newer tag that waits
    first_seen: dict[str, float] | None = None  # the min-age record to keep (None: no min-age)


def _ranked(spec: PolicySpec, tags: Sequence[str], above: str | None) -> list[str]:
    """The admitted tags ranking above ``above`` (all admitted without one), highest first."""
    policy = build(spec)
    admitted = [t for t in dict.fromkeys(tags) if policy.select([t]) == t]
    if above is not None:
        admitted = [t for t in admitted if t != above and policy.select([t, above]) == t]

    def cmp(a: str, b: str) -> int:
        return 0 if a == b else (1 if policy.select([a, b]) == a else -1)

    return sorted(admitted, key=functools.cmp_to_key(cmp), reverse=True)


def first_seen_now(
    spec: PolicySpec, tags: Sequence[str], current: str | None, stored: Mapping[str, float], now: float
) -> dict[str, float]:
    """The min-age record after this scan: the tags that rank above the current tag, each with the time it was first
    recorded (now when new), the FIRST_SEEN_MAX highest kept."""
    return {t: stored.get(t, now) for t in _ranked(spec, tags, current)[:FIRST_SEEN_MAX]}


def choose(
    name: str,
    spec: PolicySpec,
    extras: Extras,
    tags: Sequence[str],
    current: tuple[str, str] | None,
    source: Source | None,
    stored_first_seen: Mapping[str, float],
    now: float,
) -> Choice:
    """The tag the policy resolves to now, or why it stays (``current``: its latestRef's tag and digest)."""
    if extras.held:
        held = f"held (imagebot.dev/hold): {extras.hold or 'no reason given'}"
        if extras.hold_tag is not None and (current is None or current[0] != extras.hold_tag):
            if extras.hold_tag not in tags:
                return Choice(None, "", Why.HELD, f"{held}; the pinned tag {extras.hold_tag} is not in the repository")
            return Choice(extras.hold_tag, "", Why.HELD, f"{held}; pinned at {extras.hold_tag}")
        return Choice(None, "", Why.HELD, held + (f"; pinned at {extras.hold_tag}" if extras.hold_tag else ""))
    env = Environment(
        name,
        None if extras.promote_from else spec,
        Target(""),
        promote_from=extras.promote_from,
        soak_seconds=extras.soak_seconds,
        min_age_seconds=extras.min_age_seconds,
        allow_downgrade=extras.allow_downgrade,
    )
    seen: dict[str, float] | None = None
    first_seen: dict[str, float] = {}
    if extras.min_age_seconds and not extras.promote_from:
        seen = first_seen_now(spec, tags, current[0] if current else None, stored_first_seen, now)
        # tags at or below the current one cannot be held back any more: they count as old
        first_seen = {t: seen.get(t, 0.0 if current is not None else now) for t in tags}
    peers: dict[str, Current] = {}
    cur = None
    if current is not None:
        tag, digest = current
        if source is not None and source.tag == tag and not digest:
            digest = source.digest  # this policy reflects no digest: the same tag is the same promotion
        cur = Current(tag, digest or None, 0.0)
    if source is not None and source.tag is not None:
        peers[source.name] = Current(source.tag, source.digest or None, source.since)
    approval = Approval(extras.approve, "imagebot.dev/approve", now) if extras.approve else None
    d = decide(env, list(tags), first_seen, now, cur, peers, Overrides(approval=approval))
    if d.tag is not None:
        return Choice(d.tag, d.digest or "", None, d.reason, 0.0, None, seen)
    why: Why | None = None
    if d.reason.startswith("downgrade guard"):
        why = Why.DOWNGRADE
    elif extras.promote_from and d.pending:
        why = Why.SOAKING
    elif extras.promote_from and d.reason.startswith("nothing to promote"):
        why = Why.NOTHING_TO_PROMOTE
    elif d.pending:
        why = Why.MIN_AGE
    message = d.reason
    if why is Why.SOAKING:
        message = f"{d.pending} soaking in {extras.promote_from}: {left(d.remaining)} left"
    elif why is Why.MIN_AGE and d.pending:
        message = f"{d.reason}; {d.pending} reaches the minimum age in {left(d.remaining)}"
    return Choice(None, "", why, message, max(d.remaining, 0.0), d.pending, seen)


def left(seconds: float) -> str:
    s = max(int(seconds + 0.999), 0)
    h, m = divmod(s // 60, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s % 60:02d}s" if m else f"{s}s"
