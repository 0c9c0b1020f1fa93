"""gitopskit.yamlsafe: the limits are exact, values load as the safe loader loads them, errors carry no values."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopskit.yamlsafe import Limits, YamlError, YamlLimitError, load_all, load_json


def expanded_nodes(v: Any) -> int:
    """Nodes of a value with every alias expanded: each scalar, mapping key and collection counts one."""
    if isinstance(v, dict):
        return 1 + sum(1 + expanded_nodes(x) for x in v.values())
    if isinstance(v, list):
        return 1 + sum(expanded_nodes(x) for x in v)
    return 1


@st.composite
def aliased_documents(draw: st.DrawFn) -> str:
    """A mapping of anchored lists, each made of scalars and aliases of earlier anchors."""
    lines = []
    for i in range(draw(st.integers(1, 6))):
        items = draw(st.lists(st.one_of(st.integers(0, 99).map(str), st.integers(0, max(i - 1, 0))), min_size=1, max_size=5))
        parts = [x if isinstance(x, str) or i == 0 else f"*a{x}" for x in items]
        parts = [p if not isinstance(p, int) else str(p) for p in parts]
        lines.append(f"k{i}: &a{i} [{', '.join(parts)}]")
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(aliased_documents())
def test_the_node_limit_is_exact_with_aliases_expanded(text: str) -> None:
    (doc,) = load_all(text)
    n = expanded_nodes(doc.data)
    assert load_all(text, Limits(max_nodes=n))[0].data == doc.data
    with pytest.raises(YamlLimitError, match="expands to more than"):
        load_all(text, Limits(max_nodes=n - 1))


text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8)  # YAML allows no raw control characters
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=30,
)


def depth(v: Any) -> int:
    if isinstance(v, dict | list):
        return 1 + max((depth(x) for x in (v.values() if isinstance(v, dict) else v)), default=0)
    return 0


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_json_loads_unchanged_and_the_depth_limit_is_exact(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)  # libyaml reads no surrogate-pair escapes (\ud800\udc00)
    assert load_all(text)[0].data == value
    d = depth(value)
    if d:
        assert load_all(text, Limits(max_depth=d))[0].data == value
        with pytest.raises(YamlLimitError, match="nested deeper"):
            load_all(text, Limits(max_depth=d - 1))


def test_documents_carry_their_start_line() -> None:
    docs = load_all("a: 1\n---\n\nb: 2\n---\n# only a comment\n")
    assert [(d.line, d.data) for d in docs] == [(1, {"a": 1}), (2, {"b": 2}), (5, None)]


@pytest.mark.parametrize(
    "text",
    ["password: c2VjcmV0\npassword: aHVudGVy\n", "token: 'c2VjcmV0\n", "data: {token: c2VjcmV0\n"],
    ids=["duplicate-key", "unterminated-quote", "unclosed-flow"],
)
def test_errors_say_where_and_never_quote_values(text: str) -> None:
    with pytest.raises(YamlError) as info:
        load_all(text)
    assert info.value.line >= 1 and "c2VjcmV0" not in str(info.value) and "aHVudGVy" not in str(info.value)
    assert "\n" not in str(info.value)


def test_an_over_long_stream_is_refused_before_parsing() -> None:
    with pytest.raises(YamlLimitError, match="exceed the limit"):
        load_all("a: 1\n" * 100, Limits(max_bytes=99))


@pytest.mark.parametrize(
    "text",
    [
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}}',
        '\n\n  {"a": 1e3, "b": -0.5, "c": null, "d": true, "e": "\\u00e9\\/x", "f": 12345678901234567890, "g": []}\n',
        "[1, 2, {}]",
        "[" * 100 + "]" * 100,
    ],
)
def test_json_is_read_fast_with_the_meaning_and_line_yaml_gives_it(text: str) -> None:
    fast = load_json(text)
    assert fast is not None and fast == load_all(text)


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "a": 2}', '{"a": NaN}', "[" * 101 + "]" * 101, "{}\n---\n{}", "a: 1", "", '{"a": 1} # c', "null"],
)
def test_what_is_not_plain_json_within_the_limits_is_left_to_the_yaml_loader(text: str) -> None:
    assert load_json(text) is None


def test_a_json_document_over_the_size_limits_is_left_to_the_yaml_loader() -> None:
    text = json.dumps({"k": "x" * 200})
    assert load_json(text, Limits(max_text=100)) is None
    assert load_json(text, Limits(max_nodes=100)) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_values, st.booleans())
def test_any_json_the_fast_path_reads_it_reads_as_the_yaml_loader_reads_it(value: Any, ascii_only: bool) -> None:
    text = json.dumps({"v": value}, ensure_ascii=ascii_only)
    fast = load_json(text)
    assert fast is None or fast == load_all(text)
    if all(" " <= c <= "~" for c in text) and not re.search(r"\\u[dD][89abAB]", text):
        assert fast is not None, "plain printable ASCII (no surrogate pair escaped) always takes the fast path"
