"""Per image and environment: which tag to adopt now, or why not (pure: data + clock value in).

Guards beyond the policy: minimum age of a tag (first-seen times from the scanner, so it works
on any registry), a downgrade guard (never move to a lower version unless allowed), a hold
(a manual rollback in Git sticks), and promotion (an environment takes exactly the tag and
digest another one has run for its soak time — never a re-resolved tag).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from imagebot.config.model import Environment
from imagebot.policy import build


@dataclass(frozen=True, slots=True)
class Current:
    tag: str | None
    digest: str | None
    since: float  # when this environment's current tag was committed


@dataclass(frozen=True, slots=True)
class Decision:
    tag: str | None  # the tag to write, None for no update
    digest: str | None
    reason: str
    pending: str | None = None  # a newer tag waiting (too young / soaking)
    remaining: float = 0.0


@dataclass(frozen=True, slots=True)
class Hold:
    """An operator's hold (``imagebot hold``, the dashboard): no update until released."""

    who: str
    reason: str
    since: float


@dataclass(frozen=True, slots=True)
class Approval:
    """An operator's early approval of one promotion: exactly this tag skips the rest of its soak."""

    tag: str
    who: str
    at: float


@dataclass(frozen=True, slots=True)
class Overrides:
    hold: Hold | None = None
    approval: Approval | None = None


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def decide(
    env: Environment,
    tags: list[str],
    first_seen: Mapping[str, float],
    now: float,
    current: Current | None,
    peers: Mapping[str, Current],
    overrides: Overrides | None = None,
) -> Decision:
    if env.hold:
        return Decision(None, None, "on hold: updates stopped for this environment")
    if overrides is not None and overrides.hold is not None:
        h = overrides.hold
        return Decision(None, None, f"on hold by {h.who} since {_utc(h.since)}: {h.reason or 'no reason given'}")
    if env.promote_from:
        src = peers.get(env.promote_from)
        if src is None or src.tag is None:
            return Decision(None, None, f"nothing to promote: {env.promote_from} has no current tag yet")
        if current is not None and (current.tag, current.digest) == (src.tag, src.digest):
            return Decision(None, None, f"already at {env.promote_from}'s {src.tag}")
        age = now - src.since
        approval = overrides.approval if overrides is not None else None
        if age < env.soak_seconds and approval is not None and approval.tag == src.tag:
            return Decision(src.tag, src.digest, f"promoted from {env.promote_from}: approved early by {approval.who}")
        if age < env.soak_seconds:
            left = env.soak_seconds - age
            return Decision(None, None, f"{src.tag} soaking in {env.promote_from}", src.tag, left)
        return Decision(src.tag, src.digest, f"promoted from {env.promote_from} after {age / 3600:.1f}h")
    assert env.policy is not None
    policy = build(env.policy)
    best = policy.select(tags)
    if best is None:
        return Decision(None, None, f"no tag qualifies under {policy.describe()}")
    pending = None
    remaining = 0.0
    if env.min_age_seconds:
        old_enough = [t for t in tags if now - first_seen.get(t, now) >= env.min_age_seconds]
        chosen = policy.select(old_enough)
        if chosen != best:
            pending = best
            remaining = env.min_age_seconds - (now - first_seen.get(best, now))
        best = chosen
        if best is None:
            return Decision(None, None, f"no tag is older than the minimum age yet ({pending} waits)", pending, remaining)
    cur = current.tag if current is not None else None
    if cur is not None and cur != best and not env.allow_downgrade and policy.select([cur, best]) == cur:
        return Decision(None, None, f"downgrade guard: {best} ranks below the current {cur}", pending, remaining)
    if current is not None and current.tag == best:
        return Decision(None, None, f"already at {best}", pending, remaining)
    return Decision(best, None, f"{best} is the newest allowed by {policy.describe()}", pending, remaining)
