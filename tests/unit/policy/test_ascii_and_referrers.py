"""Untrusted tags: only ASCII digits are digits, and referrers-schema tags are never releases."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopskit.goregex import compile_go
from imagebot.policy import DEFAULT_EXCLUDES, PolicyKind, PolicySpec, build
from imagebot.policy.filter import Exclusions
from imagebot.policy.semver import parse_range, parse_tag
from imagebot.registry.limits import parse_retry_after

N, A, S = PolicyKind.NUMERICAL, PolicyKind.ALPHABETICAL, PolicyKind.SEMVER
DIGEST = "3270ab1b07b8e2c3d2a5e2be4e8d4e1b8c4a0a9b5f8f0c1e2d3c4b5a69788796"

# Arabic-Indic zero, fullwidth nine, Devanagari three, superscript two, Bengali one
NON_ASCII_DIGITS = ["\u0660", "\uff19", "\u0969", "\u00b2", "\u09e7"]


def select(spec: PolicySpec, tags: list[str]) -> str | None:
    policy = build(spec)
    shuffled = tags[:]
    random.Random(5).shuffle(shuffled)
    winner = policy.select(shuffled)
    assert policy.explain(shuffled).winner == winner
    return winner


@pytest.mark.parametrize(
    ("spec", "tags", "expected"),
    [
        (PolicySpec(S, "^1"), ["1.2.9", "1.2.1\u0660"], "1.2.9"),
        (PolicySpec(S, "*"), ["1.0.0", "\u0661.0.0", "1.\uff19.0", "1.0.0-\u0663"], "1.0.0"),
        (PolicySpec(S, ">=1.0.0-0"), ["1.0.0-1", "1.0.0-\u0969"], "1.0.0-1"),
        (PolicySpec(N, "asc"), ["5", "\uff19\uff19\uff19", "1\u0660", "\u00b2"], "5"),
        (PolicySpec(N, "desc"), ["5", "-\uff19\uff19\uff19"], "5"),
        (PolicySpec(N, "asc", pattern=r"^b-(\d+)$", extract="$1"), ["b-7", "b-\uff19\uff19"], "b-7"),
    ],
    ids=[
        "semver_arabic_zero_patch",
        "semver_any_part",
        "semver_prerelease_ident",
        "numerical_fullwidth",
        "numerical_negative_fullwidth",
        "pattern_backslash_d_is_ascii_as_in_go",
    ],
)
def test_only_ascii_digits_rank_as_numbers(spec: PolicySpec, tags: list[str], expected: str) -> None:
    assert select(spec, tags) == expected


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
def test_parsers_reject_every_non_ascii_digit(digit: str) -> None:
    assert parse_tag(f"1.2.{digit}") is None
    assert parse_tag(f"1.2.3-{digit}") is None
    assert build(PolicySpec(N, "asc")).ordering.rank(digit) is None
    assert parse_retry_after(digit) is None  # '²'.isdigit() is True, and float('²') raised


def test_semver_range_whitespace_is_ascii_only() -> None:
    assert len(parse_range(">=1.0 <2.0")[0]) == 2
    with pytest.raises(Exception, match="invalid semver range"):
        parse_range(">=1.0\u2028<2.0")


@pytest.mark.parametrize(
    "tag",
    [f"sha256-{DIGEST}", f"sha256-{DIGEST}.sig", f"sha256-{DIGEST}.att", f"sha512-{DIGEST}", f"sha256-{DIGEST}.prov"],
    ids=["referrers_tag", "cosign_sig", "cosign_att", "sha512_truncated", "other_artifact"],
)
def test_referrers_tag_schema_is_excluded_by_default(tag: str) -> None:
    assert select(PolicySpec(A, "asc"), ["2024.01.01", tag]) == "2024.01.01"
    verdict = build(PolicySpec(A, "asc")).explain([tag]).verdicts[0]
    assert verdict.outcome == "excluded"


@pytest.mark.parametrize(
    "tag",
    ["sha256-abc", f"x-sha256-{DIGEST}", f"main-{DIGEST[:40]}", f"sha256-{DIGEST}-extra"],
    ids=["short_hex", "prefixed", "git_sha", "suffix_not_an_artifact"],
)
def test_tags_that_merely_look_like_digests_are_kept(tag: str) -> None:
    assert build(PolicySpec(A, "asc", excludes=DEFAULT_EXCLUDES)).exclusions.excludes(tag) is None


_CRAFTED = [
    "1.0.0", "x.sig", "x.sig\n", ".sig", "sig", "x.SIG", "a.att", "a.sbom", "a.sbom.x", "sha256-", "sha256-" + "a" * 64,
    "sha512-" + "0" * 64 + ".sig", "sha256-" + "A" * 64, "sha256-" + "a" * 63, "sha256-" + "a" * 64 + ".att.x",
    "xsha256-" + "a" * 64, "sha1-" + "a" * 64, "v1.sig.bak", "\u0663.sig", "",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(tag=st.one_of(st.sampled_from(_CRAFTED), st.text(max_size=80),
                     st.builds(lambda a, b: a + b, st.sampled_from(["sha256-", "sha512-", "", "v"]),
                               st.text(alphabet="0123456789abcdef.sigatbomSIG-", max_size=80))))  # fmt: skip
def test_the_screen_of_the_default_exclusions_agrees_with_their_regexes(tag: str) -> None:
    """The defaults skip the regex for a tag no default can match: the verdict must be the regexes' own."""
    screened = Exclusions()
    by_regex = next((p for p in DEFAULT_EXCLUDES if compile_go(p).search(tag)), None)
    assert screened.excludes(tag) == by_regex
    assert Exclusions((*DEFAULT_EXCLUDES, "^1\\.9")).excludes(tag) == by_regex or tag.startswith("1.9")
