"""Numerical, alphabetical, filters, extract templates and exclusions (Flux semantics)."""

from __future__ import annotations

import random

import pytest

from imagebot.errors import PolicyError
from imagebot.policy import DEFAULT_EXCLUDES, PolicyKind, PolicySpec, build


def select(spec: PolicySpec, tags: list[str]) -> str | None:
    policy = build(spec)
    results = set()
    for seed in range(3):
        shuffled = tags[:]
        random.Random(seed).shuffle(shuffled)
        results.add(policy.select(shuffled))
        results.add(policy.explain(shuffled).winner)
    assert len(results) == 1, f"selection depends on input order: {results}"
    return results.pop()


N, A, S = PolicyKind.NUMERICAL, PolicyKind.ALPHABETICAL, PolicyKind.SEMVER

CASES = [
    ("numerical_asc_picks_largest", PolicySpec(N, "asc"), ["1", "10", "9", "2"], "10"),
    ("numerical_desc_picks_smallest", PolicySpec(N, "desc"), ["1", "10", "9", "2"], "1"),
    ("numerical_order_is_case_insensitive", PolicySpec(N, "ASC"), ["3", "4"], "4"),
    ("numerical_floats", PolicySpec(N, "asc"), ["1.5", "1.25", "1.05"], "1.5"),
    ("numerical_negative_numbers", PolicySpec(N, "asc"), ["-1", "-10", "-2"], "-1"),
    ("numerical_negative_desc", PolicySpec(N, "desc"), ["-1", "-10", "0"], "-10"),
    ("numerical_skips_non_numbers", PolicySpec(N, "asc"), ["5", "latest", "1e", "nan", "inf", "0x10"], "5"),
    (
        "numerical_exact_for_long_timestamps",
        PolicySpec(N, "asc"),
        ["20240131235959123", "20240131235959122"],
        "20240131235959123",
    ),
    ("numerical_equal_numbers_tie_by_code_point", PolicySpec(N, "asc"), ["1", "1.0", "01"], "1.0"),
    ("numerical_exponent", PolicySpec(N, "asc"), ["1e3", "999"], "1e3"),
    ("alphabetical_asc_picks_last", PolicySpec(A, "asc"), ["a", "c", "b"], "c"),
    ("alphabetical_desc_picks_first", PolicySpec(A, "desc"), ["a", "c", "b"], "a"),
    ("alphabetical_calver", PolicySpec(A, "asc"), ["2024.01.31", "2024.12.01", "2023.12.31"], "2024.12.01"),
    ("alphabetical_rfc3339_like", PolicySpec(A, "asc"), ["2024-01-31T10-00-00Z", "2024-01-31T09-59-59Z"], "2024-01-31T10-00-00Z"),
    ("alphabetical_is_code_point_not_locale", PolicySpec(A, "asc"), ["Zeta", "alpha"], "alpha"),
    ("filter_pattern_only_keeps_matching", PolicySpec(A, "asc", pattern="^main-"), ["main-1", "zz", "main-2"], "main-2"),
    ("filter_is_unanchored_search", PolicySpec(A, "asc", pattern="rc"), ["1-rc", "zz"], "1-rc"),
    (
        "filter_extract_numbered_group",
        PolicySpec(N, "asc", pattern=r"^main-[a-f0-9]+-(\d+)$", extract="$1"),
        ["main-abc-9", "main-fff-10", "main-000-2"],
        "main-fff-10",
    ),
    (
        "filter_extract_braced_name",
        PolicySpec(N, "asc", pattern=r"^build-(?P<ts>\d+)$", extract="${ts}"),
        ["build-100", "build-99"],
        "build-100",
    ),
    (
        "filter_extract_go_named_group",
        PolicySpec(N, "asc", pattern=r"^build-(?<ts>\d+)$", extract="$ts"),
        ["build-100", "build-99"],
        "build-100",
    ),
    (
        "filter_extract_feeds_semver",
        PolicySpec(S, "^1", pattern=r"^app-(.*)$", extract="$1"),
        ["app-1.2.0", "app-2.0.0", "other-1.9.0"],
        "app-1.2.0",
    ),
    (
        "filter_same_extracted_value_ties_by_code_point",
        PolicySpec(N, "asc", pattern=r"-(\d+)$", extract="$1"),
        ["a-5", "b-5", "c-4"],
        "b-5",
    ),
    ("filter_unknown_group_expands_empty", PolicySpec(A, "asc", pattern=r"^(x)(\d)$", extract="$9$2"), ["x1", "x2"], "x2"),
    ("filter_dollar_dollar_is_literal", PolicySpec(A, "asc", pattern=r"^(\d)$", extract="$$$1"), ["1", "2"], "2"),
    ("default_excludes_signatures", PolicySpec(A, "asc"), ["1", "sha256-abc.sig", "sha256-abc.att", "x.sbom"], "1"),
    ("user_excludes", PolicySpec(S, "*", excludes=(*DEFAULT_EXCLUDES, "^1\\.9")), ["1.9.0", "1.8.0"], "1.8.0"),
    ("no_tags_selects_nothing", PolicySpec(N, "asc"), [], None),
]


@pytest.mark.parametrize(("spec", "tags", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_policy_selects_expected_tag(spec: PolicySpec, tags: list[str], expected: str | None) -> None:
    assert select(spec, tags) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (PolicySpec(N, "up"), "invalid order 'up'"),
        (PolicySpec(A, "sideways"), "invalid order"),
        (PolicySpec(A, "asc", pattern="(unclosed"), "invalid --pattern regex '(unclosed'"),
        (PolicySpec(A, "asc", extract="$1"), "--extract needs --pattern"),
        (PolicySpec(A, "asc", excludes=("[",)), "invalid --exclude regex"),
    ],
    ids=["bad_numerical_order", "bad_alphabetical_order", "bad_pattern", "extract_without_pattern", "bad_exclude"],
)
def test_invalid_policy_is_rejected(spec: PolicySpec, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        build(spec)
    assert fragment in str(info.value)


def test_explain_reports_extracted_value_and_exclusion() -> None:
    policy = build(PolicySpec(N, "asc", pattern=r"^b-(\d+)$", extract="$1"))
    rows = {v.tag: v for v in policy.explain(["b-3", "b-12", "x", "b-1.sig"]).verdicts}
    assert rows["b-12"].outcome == "selected" and rows["b-12"].value == "12"
    assert rows["x"].outcome == "no-match"
    assert rows["b-1.sig"].outcome == "excluded" and "\\.sig" in rows["b-1.sig"].reason
