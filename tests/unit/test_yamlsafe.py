"""gitopskit.yamlsafe: the limits are exact, values load as the safe loader loads them, errors carry no values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopskit.yamlsafe import Limits, YamlError, YamlLimitError, load_all


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
