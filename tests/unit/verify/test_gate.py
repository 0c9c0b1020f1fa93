"""The gate over a policy: walk down to the newest signed tag, bounded, cached verdicts free."""

from __future__ import annotations

import random

from imagebot.policy import Outcome, PolicyKind, PolicySpec, build
from imagebot.verify import Status, Verification, explain, first_verified

POLICY = build(PolicySpec(PolicyKind.SEMVER, "^1"))
TAGS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0", "sha256-" + "a" * 64]
OK = Verification(Status.VERIFIED, "legacy .sig signed by k.pub")


def checker(signed: set[str], cached: set[str] = frozenset()):  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def check(tag: str) -> tuple[Verification, bool]:
        seen.append(tag)
        return (OK if tag in signed else Verification(Status.NO_SIGNATURE)), tag not in cached

    return check, seen


def test_the_newest_signed_tag_wins_over_newer_unsigned_ones() -> None:
    check, seen = checker({"1.2.0", "1.0.0"})
    tags = TAGS[:]
    random.Random(7).shuffle(tags)
    gated = first_verified(POLICY.select, tags, check)
    assert gated.winner == "1.2.0"
    assert seen == ["1.4.0", "1.3.0", "1.2.0"]  # 2.0.0 is outside the range: never fetched
    assert gated.reasons() == "1.4.0: signature not verified (no signature); 1.3.0: signature not verified (no signature)"


def test_no_signed_tag_gives_no_winner_and_every_reason() -> None:
    gated = first_verified(POLICY.select, TAGS, checker(set())[0])
    assert gated.winner is None and not gated.exhausted and len(gated.rejected) == 5


def test_the_walk_stops_after_the_limit_of_fetches_and_cached_verdicts_are_free() -> None:
    check, seen = checker({"1.0.0"})
    gated = first_verified(POLICY.select, TAGS, check, limit=2)
    assert gated.winner is None and gated.exhausted and seen == ["1.4.0", "1.3.0"]
    check, seen = checker({"1.0.0"}, cached={"1.4.0", "1.3.0"})  # the next pass: those two come from the cache
    assert first_verified(POLICY.select, TAGS, check, limit=2).winner is None
    check, seen = checker({"1.0.0"}, cached={"1.4.0", "1.3.0", "1.2.0"})
    assert first_verified(POLICY.select, TAGS, check, limit=2).winner == "1.0.0"


def test_explain_marks_passed_over_tags_unverified_and_says_why() -> None:
    gated = first_verified(POLICY.select, TAGS, checker({"1.3.0"})[0])
    sel = explain(POLICY, TAGS, gated)
    outcomes = {v.tag: v.outcome for v in sel.verdicts}
    assert sel.winner == "1.3.0" and outcomes["1.4.0"] is Outcome.UNVERIFIED and outcomes["1.3.0"] is Outcome.SELECTED
    assert [v.tag for v in sel.verdicts] == TAGS
    assert sel.reason.endswith("signature verified; 1.4.0: signature not verified (no signature)")
    nothing = explain(POLICY, TAGS, first_verified(POLICY.select, TAGS, checker(set())[0]))
    assert nothing.winner is None and nothing.reason.startswith("no tag with a verified signature qualifies")
    limited = explain(POLICY, TAGS, first_verified(POLICY.select, TAGS, checker({"1.0.0"})[0], limit=1), limit=1)
    assert limited.winner is None and {v.tag: v.outcome for v in limited.verdicts}["1.3.0"] is Outcome.KEPT
