"""The signature gate over a policy (pure: the check is passed in, the caller does the fetching).

The policy picks the newest allowed tag; the gate verifies it; a tag that fails is set aside and the
policy picks again — down to the newest signed tag, at most ``limit`` checks per pass (the rest wait
for the next pass, so a repository full of unsigned tags cannot make one pass fetch them all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imagebot.policy import Outcome, Selection, TagPolicy, Verdict
from imagebot.verify.cosign import Verification

DEFAULT_LIMIT = 10  # signatures fetched per image and environment per pass (cached verdicts are free)


@dataclass(frozen=True, slots=True)
class Gated:
    winner: str | None  # the newest allowed tag that verified, or None
    rejected: tuple[tuple[str, Verification], ...]  # newer allowed tags that did not, newest first
    exhausted: bool = False  # stopped at the limit with allowed tags left unchecked

    def reasons(self) -> str:
        """``1.4.0: signature not verified (no signature); 1.3.0: …`` ("" when none was rejected)."""
        return "; ".join(f"{tag}: {v.describe()}" for tag, v in self.rejected)


def first_verified(
    select: Callable[[list[str]], str | None],
    tags: Sequence[str],
    check: Callable[[str], tuple[Verification, bool]],
    limit: int = DEFAULT_LIMIT,
) -> Gated:
    """Walk down ``select``'s choices until ``check`` passes one.

    ``check(tag)`` answers the verdict and whether it had to fetch (False: a cached verdict); at most
    ``limit`` fetches, so the next pass, its verdicts cached, goes further down.
    """
    left = list(tags)
    rejected: list[tuple[str, Verification]] = []
    fetched = 0
    while True:
        tag = select(left)
        if tag is None:
            return Gated(None, tuple(rejected))
        if fetched >= limit:
            return Gated(None, tuple(rejected), exhausted=True)
        verdict, fresh = check(tag)
        fetched += fresh
        if verdict.ok:
            return Gated(tag, tuple(rejected))
        rejected.append((tag, verdict))
        left = [t for t in left if t != tag]


def explain(policy: TagPolicy, tags: Sequence[str], gated: Gated, limit: int = DEFAULT_LIMIT) -> Selection:
    """The policy's explanation with the gate's verdicts: passed-over tags ``unverified`` with the reason,
    the winner's signature noted, and no winner when the gate found no signed tag."""
    passed = dict(gated.rejected)
    sel = policy.explain([t for t in tags if t not in passed])
    mine = {v.tag: v for v in sel.verdicts}
    verdicts = []
    for tag in dict.fromkeys(tags):
        if tag in passed:
            v = passed[tag]
            verdicts.append(Verdict(tag, Outcome.UNVERIFIED, tag, f"{v.describe()}: {v.detail}" if v.detail else v.describe()))
            continue
        verdict = mine[tag]
        if tag == sel.winner and gated.winner is None:  # the limit stopped the walk before this one was checked
            verdict = Verdict(tag, Outcome.KEPT, verdict.value, f"signature not checked (limit of {limit} checks reached)")
        elif tag == gated.winner:
            verdict = Verdict(tag, verdict.outcome, verdict.value, f"{verdict.reason}, signature verified")
        verdicts.append(verdict)
    why = f"; {gated.reasons()}" if gated.rejected else ""
    if gated.winner is not None:
        reason = f"{sel.reason}, signature verified{why}"
    elif gated.exhausted:
        reason = f"no signed tag within {limit} signature checks{why}"
    elif gated.rejected:
        reason = f"no tag with a verified signature qualifies under {sel.policy}{why}"
    else:
        reason = sel.reason
    return Selection(sel.policy, gated.winner, reason, tuple(verdicts))
