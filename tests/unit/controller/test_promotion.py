"""imagebot's own settings on a Flux ImagePolicy (annotations) and the decision they feed — pure: file mode's decide()."""

from __future__ import annotations

import json

import pytest

from imagebot.config import fluxextras as fx
from imagebot.controller import promotion as P
from imagebot.policy import PolicyKind, PolicySpec

SEMVER = PolicySpec(PolicyKind.SEMVER, ">=1.0.0")
H = 3600.0
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("annotations", "named"),
    [
        ({fx.SOAK: "1d"}, fx.SOAK),  # not a Go duration
        ({fx.PROMOTE_FROM: "staging", fx.SOAK: "-1h"}, fx.SOAK),
        ({fx.SOAK: "1h"}, fx.SOAK),  # soak without promote-from
        ({fx.PROMOTE_FROM: "Not_A_Name"}, fx.PROMOTE_FROM),
        ({fx.PROMOTE_FROM: "prod"}, fx.PROMOTE_FROM),  # itself
        ({fx.MIN_AGE: "soon"}, fx.MIN_AGE),
        ({fx.PROMOTE_FROM: "staging", fx.MIN_AGE: "1h"}, fx.MIN_AGE),
        ({fx.ALLOW_DOWNGRADE: "yes"}, fx.ALLOW_DOWNGRADE),
        ({fx.HOLD_TAG: "1.0.0"}, fx.HOLD_TAG),  # a pin needs a hold
        ({fx.HOLD: "x", fx.HOLD_TAG: "not a tag"}, fx.HOLD_TAG),
        ({fx.APPROVE: "1.0.0"}, fx.APPROVE),  # an approval needs a promotion
        ({"imagebot.dev/soak-time": "1h"}, "imagebot.dev/soak-time"),  # a typo is never a silently dropped guard
    ],
)
def test_every_bad_annotation_is_an_error_naming_it(annotations: dict[str, str], named: str) -> None:
    with pytest.raises(fx.ExtrasError) as err:
        fx.parse(annotations, "prod")
    assert err.value.annotation == named and f"metadata.annotations[{named}]" in str(err.value)


def test_the_settings_parse_and_other_annotations_are_left_alone() -> None:
    got = fx.parse({fx.PROMOTE_FROM: "staging", fx.SOAK: "24h", fx.APPROVE: "1.5.0", "team.example/x": "1"}, "prod")
    assert (got.promote_from, got.soak_seconds, got.approve, got.held) == ("staging", 24 * H, "1.5.0", False)
    got = fx.parse({fx.MIN_AGE: "2h", fx.ALLOW_DOWNGRADE: "true", fx.HOLD: "", fx.HOLD_TAG: "1.0.0"}, "x")
    assert (got.min_age_seconds, got.allow_downgrade, got.hold, got.hold_tag, got.held) == (2 * H, True, "", "1.0.0", True)
    assert fx.parse(None) == fx.Extras()


def test_the_records_round_trip_and_a_hand_edited_one_is_named() -> None:
    hist = P.read_history({fx.LATEST_SINCE: P.with_entry((), "1.4.0", "", NOW - 5 * H)})
    value = P.with_entry(hist, "1.5.0", "sha256:ab", NOW)
    assert P.since_of(P.read_history({fx.LATEST_SINCE: value}), "1.5.0", "sha256:ab") == NOW
    assert P.since_of(P.read_history({fx.LATEST_SINCE: value}), "1.4.0", "") is None, "only the current entry counts"
    for i in range(20):
        value = P.with_entry(P.read_history({fx.LATEST_SINCE: value}), f"1.{i}.0", "", NOW)
    assert len(json.loads(value)) == P.HISTORY
    for bad in ("{", "[1]", '[{"tag": "1.0.0", "since": "yesterday"}]'):
        with pytest.raises(fx.ExtrasError, match="latest-since"):
            P.read_history({fx.LATEST_SINCE: bad})
    seen = {"1.5.0": NOW}
    assert P.read_first_seen({fx.FIRST_SEEN: P.dump_first_seen(seen)}) == seen
    with pytest.raises(fx.ExtrasError, match="first-seen"):
        P.read_first_seen({fx.FIRST_SEEN: '{"1.5.0": 12}'})


def choose(extras: fx.Extras, tags: list[str], current: str | None, source: P.Source | None = None,
           seen: dict[str, float] | None = None, now: float = NOW) -> P.Choice:  # fmt: skip
    return P.choose("prod", SEMVER, extras, tags, (current, "") if current else None, source, seen or {}, now)


def test_a_promotion_waits_for_the_soak_then_takes_exactly_the_source_tag_and_digest() -> None:
    extras = fx.Extras(promote_from="staging", soak_seconds=H)
    src = P.Source("staging", "1.5.0", "sha256:aa", NOW - 20 * 60)
    c = choose(extras, ["1.4.0", "1.5.0", "1.6.0"], "1.4.0", src)
    assert (c.tag, c.why, c.pending) == (None, P.Why.SOAKING, "1.5.0")
    assert c.message == "1.5.0 soaking in staging: 40m00s left" and c.remaining == pytest.approx(40 * 60)
    c = choose(extras, ["1.4.0", "1.5.0", "1.6.0"], "1.4.0", src, now=NOW + 41 * 60)
    assert (c.tag, c.digest, c.why) == ("1.5.0", "sha256:aa", None), "the source's tag, never the newest (1.6.0)"
    approved = choose(fx.Extras(promote_from="staging", soak_seconds=H, approve="1.5.0"), ["1.5.0"], "1.4.0", src)
    assert approved.tag == "1.5.0"
    assert choose(extras, ["1.5.0"], "1.5.0", src, now=NOW + 2 * H).tag is None, "already there (no digest reflected)"
    nothing = choose(extras, ["1.5.0"], None, P.Source("staging", None, "", 0.0))
    assert (nothing.tag, nothing.why) == (None, P.Why.NOTHING_TO_PROMOTE)


def test_min_age_holds_a_fresh_tag_back_and_records_when_it_was_first_seen() -> None:
    extras = fx.Extras(min_age_seconds=2 * H)
    c = choose(extras, ["1.4.0", "1.5.0"], "1.4.0")
    assert (c.tag, c.why, c.pending, c.first_seen) == (None, P.Why.MIN_AGE, "1.5.0", {"1.5.0": NOW})
    later = choose(extras, ["1.4.0", "1.5.0"], "1.4.0", seen=c.first_seen, now=NOW + 2 * H)
    assert later.tag == "1.5.0", "the recorded first-seen time is the tag's age"
    assert choose(extras, ["1.4.0", "1.5.0"], "1.4.0", seen={}, now=NOW + 2 * H).tag is None, "unrecorded: seen now"
    fresh = choose(extras, ["1.4.0", "1.5.0"], None)
    assert (fresh.tag, fresh.why) == (None, P.Why.MIN_AGE), "a new policy's tags all wait the minimum age (file mode)"
    many = [f"1.{i}.0" for i in range(200)]
    assert len(choose(extras, many, "1.0.0").first_seen or {}) == P.FIRST_SEEN_MAX


def test_the_downgrade_guard_and_hold() -> None:
    c = choose(fx.Extras(), ["1.4.0"], "1.5.0")  # 1.5.0 deleted from the registry
    assert (c.tag, c.why) == (None, P.Why.DOWNGRADE) and "1.4.0 ranks below the current 1.5.0" in c.message
    assert choose(fx.Extras(allow_downgrade=True), ["1.4.0"], "1.5.0").tag == "1.4.0"
    held = choose(fx.Extras(hold="incident 42"), ["1.4.0", "1.5.0"], "1.4.0")
    assert (held.tag, held.why, held.message) == (None, P.Why.HELD, "held (imagebot.dev/hold): incident 42")
    pinned = choose(fx.Extras(hold="rollback", hold_tag="1.3.0"), ["1.3.0", "1.4.0", "1.5.0"], "1.5.0")
    assert (pinned.tag, pinned.why) == ("1.3.0", P.Why.HELD)
    assert choose(fx.Extras(), ["1.4.0", "1.5.0"], "1.4.0").tag == "1.5.0"
