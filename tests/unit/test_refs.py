"""The one image-reference parser: grammar, Docker normalisation, spelling kept."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagebot import refs
from imagebot.errors import InvalidReference

D = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "registry", "path", "tag", "digest", "canonical"),
    [
        ("nginx", None, "nginx", None, None, "docker.io/library/nginx"),
        ("nginx:1.25", None, "nginx", "1.25", None, "docker.io/library/nginx"),
        ("library/nginx", None, "library/nginx", None, None, "docker.io/library/nginx"),
        ("docker.io/nginx", "docker.io", "nginx", None, None, "docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "index.docker.io", "library/nginx", None, None, "docker.io/library/nginx"),
        ("bitnami/redis:7", None, "bitnami/redis", "7", None, "docker.io/bitnami/redis"),
        ("localhost:5000/x", "localhost:5000", "x", None, None, "localhost:5000/x"),
        ("localhost/x:1", "localhost", "x", "1", None, "localhost/x"),
        ("host:5000/app", "host:5000", "app", None, None, "host:5000/app"),
        ("ghcr.io/org/app:v1.2.3@" + D, "ghcr.io", "org/app", "v1.2.3", D, "ghcr.io/org/app"),
        ("app@" + D, None, "app", None, D, "docker.io/library/app"),
        ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None, "[::1]:5000/app"),
        ("a.b/c__d/e-f---g.h_i:T_.-", "a.b", "c__d/e-f---g.h_i", "T_.-", None, "a.b/c__d/e-f---g.h_i"),
    ],
)
def test_parse_normalises_and_keeps_spelling(text, registry, path, tag, digest, canonical) -> None:  # type: ignore[no-untyped-def]
    r = refs.parse(text)
    assert (r.registry, r.path, r.tag, r.digest, r.canonical_name) == (registry, path, tag, digest, canonical)
    assert str(r) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("Nginx", "invalid repository path"),
        ("nginx:", "invalid tag"),
        ("nginx:-1", "invalid tag"),
        ("nginx:" + "a" * 129, "invalid tag"),
        ("nginx@sha256:abc", "invalid digest"),
        ("nginx@sha256:" + "A" * 64, "invalid digest"),
        ("ghcr.io/org//app", "invalid repository path"),
        ("ghcr.io/org/app:1 ", "whitespace"),
        ("ex ample.com/app", "whitespace"),
        ("bad_host:5000/app", "invalid registry host"),
        ("a/" + "b" * 260, "longer than 255"),
    ],
)
def test_parse_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        refs.parse(text)


def test_require_version_and_name_only() -> None:
    with pytest.raises(InvalidReference, match="neither a tag nor a digest"):
        refs.parse("ghcr.io/org/app", require_version=True)
    with pytest.raises(InvalidReference, match="without tag or digest"):
        refs.parse_name("ghcr.io/org/app:1")


def test_with_version_keeps_the_name_as_written() -> None:
    r = refs.parse("nginx:1.0@" + D)
    assert str(r.with_version("1.1", None)) == "nginx:1.1"
    assert refs.parse("nginx").same_repository(refs.parse("docker.io/library/nginx:2"))
    assert not refs.parse("nginx").same_repository(refs.parse("ghcr.io/nginx"))


component = st.from_regex(r"[a-z0-9]{1,5}(?:[._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)


@given(
    host=st.sampled_from([None, "ghcr.io", "localhost:5000", "my.reg:443", "docker.io"]),
    parts=st.lists(component, min_size=1, max_size=3),
    tag=st.none() | tags,
)
def test_format_parse_roundtrip(host: str | None, parts: list[str], tag: str | None) -> None:
    if host is None and "." in parts[0]:
        parts = ["x", *parts]  # a first component with a dot names a registry host
    text = (f"{host}/" if host else "") + "/".join(parts) + (f":{tag}" if tag else "")
    r = refs.parse(text)
    assert str(r) == text
    assert refs.parse(str(r)) == r


@given(st.text(max_size=40))
def test_parse_never_raises_anything_but_invalid_reference(text: str) -> None:
    with contextlib.suppress(InvalidReference):
        refs.parse(text)


# ------------------------------------------------------------------ the tag grammar, by property
_TAG_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_TAG_REST = _TAG_FIRST | frozenset(".-")


def _reference_valid_tag(tag: str) -> bool:
    """The OCI tag grammar spelled out character by character (no regex to get wrong)."""
    return 1 <= len(tag) <= 128 and tag[0] in _TAG_FIRST and all(c in _TAG_REST for c in tag[1:])


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="aZ09_.-#: \t\n\u2028\u0660\uff19/", max_size=12),
        st.text(alphabet="a1.", min_size=120, max_size=135),
        st.text(max_size=12),
    )
)
def test_valid_tag_is_exactly_the_oci_grammar(tag: str) -> None:
    assert refs.valid_tag(tag) == _reference_valid_tag(tag)
