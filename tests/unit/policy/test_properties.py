"""Property tests: the winner is a member of the input, satisfies the policy, ignores order."""

from __future__ import annotations

from decimal import Decimal

import semver
from hypothesis import given, settings
from hypothesis import strategies as st

from imagebot.policy import PolicyKind, PolicySpec, build
from imagebot.policy.semver import parse_tag

num = st.integers(min_value=0, max_value=30)
ident = st.one_of(st.integers(0, 20).map(str), st.sampled_from(["alpha", "beta", "rc", "x-1", "0a"]))
versions = st.builds(
    lambda ma, mi, pa, pre, v: f"{'v' if v else ''}{ma}.{mi}.{pa}" + (f"-{'.'.join(pre)}" if pre else ""),
    num,
    num,
    num,
    st.lists(ident, max_size=3),
    st.booleans(),
)
tags = st.lists(st.one_of(versions, st.text(alphabet="0123456789.-abv+", max_size=10)), max_size=30)
ranges = st.sampled_from(["*", "^1", "~2.3", ">=1.0.0-0", ">=1.0 <3", "1.x || 5.x", "1.2 - 3", "!=4.0.0", "<=2", ">2.1"])


@settings(max_examples=300, deadline=None)
@given(tags=tags, range_=ranges, data=st.data())
def test_semver_winner_is_member_admitted_and_order_independent(tags: list[str], range_: str, data: st.DataObject) -> None:
    policy = build(PolicySpec(PolicyKind.SEMVER, range_))
    winner = policy.select(tags)
    permuted = data.draw(st.permutations(tags))
    assert policy.select(permuted) == winner
    if winner is None:
        assert all(policy.ordering.key(t).__class__.__name__ == "Rejected" for t in tags if policy.exclusions.excludes(t) is None)
        return
    assert winner in tags
    key = policy.ordering.key(winner)
    for t in tags:
        k = policy.ordering.key(t)
        if k.__class__.__name__ != "Rejected":
            assert k <= key


def _package_parse(tag: str) -> semver.Version | None:
    try:
        return semver.Version.parse(tag[1:] if tag.startswith("v") else tag)
    except (ValueError, TypeError):
        return None


# Near-misses of semver: one character inserted, deleted or replaced in a valid version (with
# build metadata), which reaches leading zeros, empty identifiers, missing parts, stray signs.
valid_with_build = st.builds(lambda v, b: v + (f"+{b}" if b else ""), versions, st.sampled_from(["", "b.1", "0-x.01"]))


@st.composite
def near_versions(draw: st.DrawFn) -> str:
    tag = draw(valid_with_build)
    i = draw(st.integers(0, len(tag)))
    c = draw(st.sampled_from("0123.-+vaZ"))
    edit = draw(st.sampled_from(["insert", "delete", "replace", "zero", "keep"]))
    if edit == "zero":  # a leading zero on a number or identifier
        starts = [0] + [j + 1 for j, ch in enumerate(tag) if ch in ".-"]
        i = draw(st.sampled_from(starts))
        return tag[:i] + "0" + tag[i:]
    if edit == "insert":
        return tag[:i] + c + tag[i:]
    if edit == "delete":
        return tag[:i] + tag[i + 1 :]
    if edit == "replace":
        return tag[:i] + c + tag[i + 1 :]
    return tag


# Any Unicode decimal digit other than 0-9 (Arabic-Indic, fullwidth, Devanagari, ...).
unicode_digit = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())
ascii_or_unicode_digits = st.text(alphabet=st.sampled_from("0123456789.-+e") | unicode_digit, min_size=1, max_size=8)


@st.composite
def with_unicode_digit(draw: st.DrawFn) -> str:
    base = draw(versions)
    i = draw(st.integers(0, len(base)))
    return base[:i] + draw(unicode_digit) + base[i:]


@settings(max_examples=400, deadline=None)
@given(near_versions())
def test_fast_tag_parser_accepts_exactly_the_ascii_tags_the_semver_package_accepts(tag: str) -> None:
    ours, ref = parse_tag(tag), _package_parse(tag)
    assert (ours is None) == (ref is None)
    if ours is not None and ref is not None:
        assert ours[:3] == (ref.major, ref.minor, ref.patch)
        assert (ours[3] == 0) == (ref.prerelease is not None)


@settings(max_examples=300, deadline=None)
@given(st.one_of(with_unicode_digit(), st.text(min_size=1, max_size=20).filter(lambda t: not t.isascii())))
def test_fast_tag_parser_rejects_every_non_ascii_tag(tag: str) -> None:
    # the package's \d is Unicode-wide (it reads '1.2.1\u0660' as 1.2.10); ours must not be
    assert parse_tag(tag) is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789.-+eE", max_size=8), ascii_or_unicode_digits, st.text(max_size=8)))
def test_numerical_ranks_only_ascii_finite_decimals(value: str) -> None:
    k = build(PolicySpec(PolicyKind.NUMERICAL, "asc")).ordering.rank(value)
    if k is not None:
        assert value.isascii() and k.is_finite() and k == Decimal(value)
        assert not any(c.isspace() or c == "_" for c in value)


# Few distinct numbers, so that equal cores meet and pre-release identifiers decide.
close_versions = st.builds(
    lambda core, pre: core + (f"-{'.'.join(pre)}" if pre else ""),
    st.sampled_from(["1.0.0", "1.0.1", "v1.0.0"]),
    st.lists(st.sampled_from(["0", "1", "2", "9", "10", "11", "a", "b", "-", "a-1", "1a"]), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(a=versions | close_versions, b=versions | close_versions)
def test_fast_tag_order_agrees_with_semver_package(a: str, b: str) -> None:
    ka, kb = parse_tag(a), parse_tag(b)
    va, vb = semver.Version.parse(a.lstrip("v")), semver.Version.parse(b.lstrip("v"))
    assert ka is not None and kb is not None
    assert (ka > kb) - (ka < kb) == va.compare(vb)


@settings(max_examples=200, deadline=None)
@given(
    tags=st.lists(st.text(max_size=8), max_size=25),
    order=st.sampled_from(["asc", "desc"]),
    kind=st.sampled_from([PolicyKind.NUMERICAL, PolicyKind.ALPHABETICAL]),
    data=st.data(),
)
def test_numerical_and_alphabetical_winner_is_member_and_order_independent(tags, order, kind, data) -> None:  # type: ignore[no-untyped-def]
    policy = build(PolicySpec(kind, order))
    winner = policy.select(tags)
    assert policy.select(data.draw(st.permutations(tags))) == winner
    assert winner is None or winner in tags
