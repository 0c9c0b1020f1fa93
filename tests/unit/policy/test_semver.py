"""Semver ranges: Masterminds v3 syntax, Flux's tag rules, pre-release handling, ties."""

from __future__ import annotations

import random

import pytest

from imagebot.errors import PolicyError
from imagebot.policy import PolicyKind, PolicySpec, build


def select(range_: str, tags: list[str]) -> str | None:
    policy = build(PolicySpec(PolicyKind.SEMVER, range_))
    shuffled = tags[:]
    random.Random(7).shuffle(shuffled)
    winner = policy.select(shuffled)
    assert policy.explain(shuffled).winner == winner, "explain and select must agree"
    return winner


TAGS = [
    "0.1.0",
    "0.1.5",
    "0.2.0",
    "1.0.0",
    "1.1.0",
    "1.1.9",
    "1.2.0",
    "1.2.3",
    "1.2.10",
    "1.3.0-rc.1",
    "1.3.0",
    "1.4.0-beta",
    "2.0.0-alpha.1",
    "2.0.0",
    "2.1.3",
    "3.0.0-rc.2",
    "v3.1.0",
]

CASES = [
    ("wildcard_patch", "1.2.x", "1.2.10"),
    ("tilde_minor", "~1.2", "1.2.10"),
    ("tilde_major", "~1", "1.3.0"),
    ("tilde_arrow", "~>1.1", "1.1.9"),
    ("caret_major", "^1.2", "1.3.0"),
    ("caret_zero_minor", "^0.1", "0.1.5"),
    ("caret_zero_zero", "^0.0", None),
    ("space_separated_and", ">=1.0 <2.0", "1.3.0"),
    ("comma_separated_and", ">1.1, <2", "1.3.0"),
    ("greater_partial_minor_means_next_minor", ">1.1 <1.3", "1.2.10"),
    ("greater_partial_major_means_next_major", ">1", "v3.1.0"),
    ("or_alternatives", "<0.2 || ~2.0", "2.0.0"),
    ("hyphen_range_partial_upper_admits_whole_minor", "1.1 - 2", "2.1.3"),
    ("hyphen_range_full", "1.1.0 - 1.2.3", "1.2.3"),
    ("not_equal", ">=2.0.0, !=2.1.3", "v3.1.0"),
    ("not_equal_wildcard", "^2 || ^3, !=3.x", "2.1.3"),
    ("star_any_release", "*", "v3.1.0"),
    ("equal_exact", "=1.2.3", "1.2.3"),
    ("bare_version_is_equal", "1.1.0", "1.1.0"),
    ("bare_partial_is_tilde", "1.2", "1.2.10"),
    ("v_prefix_in_range", ">=v2.0.0", "v3.1.0"),
    ("less_equal_partial_major", "<=2", "2.1.3"),
    ("less_than_excludes_bound", "<1.2.3", "1.2.0"),
    ("nothing_in_range", ">=4", None),
    ("prereleases_excluded_without_prerelease_comparator", ">=1.3.0 <1.4.0", "1.3.0"),
    ("prerelease_comparator_admits_prereleases_release_still_wins", ">=1.0.0-0", "v3.1.0"),
    ("prerelease_comparator_admits_prereleases", ">=1.0.0-0 <3.1.0", "3.0.0-rc.2"),
    ("prerelease_below_an_upper_bound_is_admitted", ">=1.0.0-0 <3.0.0", "3.0.0-rc.2"),
    ("prerelease_only_admitted_in_the_set_that_allows_it", ">=2.0.0-0 <2.0.0 || <1", "2.0.0-alpha.1"),
    ("caret_with_prerelease", "^1.4.0-0", "1.4.0-beta"),
]


@pytest.mark.parametrize(("range_", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_semver_selects_highest_version_in_range(range_: str, expected: str | None) -> None:
    assert select(range_, TAGS) == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["1.2", "1.2.3.4", "1.0.0"], "1.0.0"),
        (["01.2.3", "1.02.3", "1.0.0"], "1.0.0"),
        (["latest", "main", "sha-abc"], None),
        (["V1.0.0", "1.0.0-"], None),
        (["1.0.0+build.9", "1.0.0+build.10"], "1.0.0+build.9"),
        (["1.0.0", "v1.0.0"], "v1.0.0"),
        (["2.0.0+z", "v2.0.0", "2.0.0"], "v2.0.0"),
    ],
    ids=[
        "partial_and_four_part_skipped",
        "leading_zeros_skipped",
        "words_skipped",
        "capital_v_and_dangling_dash_skipped",
        "build_metadata_tie_broken_by_code_point",
        "v_prefix_wins_tie",
        "tie_independent_of_input_order",
    ],
)
def test_semver_parses_tags_strictly_and_breaks_ties_by_code_point(tags: list[str], expected: str | None) -> None:
    assert select(">=0.0.0", tags) == expected
    assert select(">=0.0.0", list(reversed(tags))) == expected


def test_semver_prerelease_precedence_follows_semver_2() -> None:
    tags = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1"]
    policy = build(PolicySpec(PolicyKind.SEMVER, ">=1.0.0-0"))
    for i in range(1, len(tags) + 1):
        assert policy.select(tags[:i]) == tags[i - 1]


@pytest.mark.parametrize(
    ("range_", "fragment"),
    [
        ("", "empty semver range"),
        (">=1.0 <<2", "'>=1.0 <<2'"),
        ("1.2.3 ||", "empty alternative"),
        ("banana", "'banana'"),
        (">=01.0.0", "not a version"),
        ("1.x.3", None),
        (">=1.0.0 <2 ~", "'>=1.0.0 <2 ~'"),
    ],
    ids=[
        "empty",
        "double_operator",
        "dangling_or",
        "word",
        "leading_zero",
        "wildcard_middle_is_patch_dirty",
        "dangling_operator",
    ],
)
def test_invalid_range_is_rejected_with_the_offending_part(range_: str, fragment: str | None) -> None:
    if fragment is None:  # Masterminds accepts 1.x.3 as 1.x
        assert build(PolicySpec(PolicyKind.SEMVER, range_)).select(["1.9.9", "2.0.0"]) == "1.9.9"
        return
    with pytest.raises(PolicyError) as info:
        build(PolicySpec(PolicyKind.SEMVER, range_))
    assert fragment in str(info.value)


def test_explain_names_the_comparator_that_rejected_a_tag() -> None:
    policy = build(PolicySpec(PolicyKind.SEMVER, ">=1.2.0 <1.3"))
    verdicts = {v.tag: v for v in policy.explain(["1.1.0", "1.3.1", "1.2.4", "1.2.5-rc.1", "nope"]).verdicts}
    assert "outside >=1.2.0" in verdicts["1.1.0"].reason
    assert "outside <1.3" in verdicts["1.3.1"].reason
    assert verdicts["1.2.4"].outcome == "selected"
    assert "pre-release" in verdicts["1.2.5-rc.1"].reason
    assert verdicts["nope"].outcome == "invalid"
