"""The facts behind one environment's new tag, for the pull request body and commit trailers (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from imagebot.config.model import Environment
from imagebot.policy import PolicyKind, build
from imagebot.policy.base import Outcome
from imagebot.policy.semver import parse_tag
from imagebot.runtime.decide import Current, Decision
from imagebot.update.model import Passed, Provenance, Why

_REFUSED = (Outcome.EXCLUDED, Outcome.NO_MATCH, Outcome.OUT_OF_RANGE, Outcome.INVALID)


def policy_passed_over(env: Environment, tags: Sequence[str], winner: str) -> tuple[Passed, ...]:
    """Tags newer than ``winner`` that the policy refused, newest first, with the policy's reason.

    "Newer" needs an order the refused tags have too: semver precedence, so only semver policies list them
    (a numerical or alphabetical policy's refused tags have no rank to compare)."""
    if env.policy is None or env.policy.kind is not PolicyKind.SEMVER:
        return ()
    policy = build(env.policy)
    won = policy.explain([winner]).verdicts
    top = parse_tag(won[0].value) if won else None
    if top is None:
        return ()
    # only tags newer than the winner can be listed: explain just those (a verdict depends on its own tag alone), not
    # all of them — 200 images x 300 tags made this a tenth of a cold run
    extract = policy.filter.extract if policy.filter is not None else None
    candidates = []
    for tag in dict.fromkeys(tags):
        # a verdict's value is the extracted one, or the tag itself when excluded or not matching the pattern
        for value in (tag, extract(tag) if extract is not None else None):
            if value is not None and (k := parse_tag(value)) is not None and k > top:
                candidates.append(tag)
                break
    verdicts = policy.explain(candidates).verdicts
    newer = [(k, v) for v in verdicts if v.outcome in _REFUSED and (k := parse_tag(v.value)) is not None and k > top]
    return tuple(Passed(v.tag, v.reason) for _, v in sorted(newer, key=lambda kv: kv[0], reverse=True))


def why_of(
    env: Environment,
    decision: Decision,
    tags: Sequence[str],
    current: Current | None,
    *,
    gate_passed_over: tuple[Passed, ...] = (),
    signature: str = "",
    new_digest: str | None = None,
    new: Provenance | None = None,
    old: Provenance | None = None,
) -> Why:
    assert decision.tag is not None
    policy = build(env.policy).describe() if env.policy is not None else f"promotion from {env.promote_from}"
    passed = list(gate_passed_over)
    if decision.pending and decision.pending != decision.tag:
        passed.append(Passed(decision.pending, "younger than the minimum age"))
    seen = {p.tag for p in passed}
    if env.promote_from is None:
        passed += [p for p in policy_passed_over(env, tags, decision.tag) if p.tag not in seen]
    if env.verify is None:
        signature = signature or "not required"
    return Why(
        environment=env.name,
        policy=policy,
        reason=decision.reason,
        passed_over=tuple(passed),
        signature=signature,
        old_tag=(current.tag or "") if current is not None else "",
        old_digest=(current.digest or "") if current is not None else "",
        new_digest=new_digest or decision.digest or "",
        old=old,
        new=new,
    )
