"""Property tests: edits change exactly the intended values and never raise on arbitrary text."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from imagebot import refs
from imagebot.update import EditRequest, ImageUpdate, edit_text

NEW = refs.parse("ghcr.io/org/app:2.0.0")
REQUEST = EditRequest(
    policies={"ns:app": NEW},
    images=(ImageUpdate(refs.parse_name("ghcr.io/org/app"), NEW),),
)
keys = st.sampled_from(["name", "image", "tag", "x", "note", "replicas"])
plain_words = st.sampled_from(["a", "b c", "1.0", "yes", "null", "ghcr.io/org/app:1.0", "ghcr.io/org/app-x:1", "# not"])
styles = st.sampled_from(["plain", "single", "double"])
markers = st.sampled_from(["", ' # {"$imagepolicy": "ns:app"}', ' # {"$imagepolicy": "ns:app:tag"}', " # other comment"])


def scalar(value: str, style: str) -> str:
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    if style == "double" or not value or value[0] in "#&*!|>'\"%@`" or ": " in value or " #" in value:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value in ("1.0", "yes", "null"):
        return '"' + value + '"'
    return value


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines = []
    for i in range(draw(st.integers(1, 8))):
        key = f"{draw(keys)}{i}" if draw(st.booleans()) else "image"
        if key == "image" and any(line.startswith("image:") for line in lines):
            key = f"image{i}"
        lines.append(f"{key}: {scalar(draw(plain_words), draw(styles))}{draw(markers)}")
        if draw(st.booleans()):
            lines.append("")
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return eol.join(lines) + eol


def load(text: str) -> object:
    return YAML(typ="safe", pure=True).load(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_edit_changes_exactly_the_reported_values(text: str) -> None:
    result = edit_text("f.yaml", text, REQUEST)
    before, after = load(text), load(result.updated)
    assert isinstance(before, dict) and isinstance(after, dict)
    changed = {c.field: c.new for c in result.changes}
    for key, value in before.items():
        assert after[key] == changed.get(key, value)
    assert set(after) == set(before)
    # only the bytes of the changed lines differ
    old_lines, new_lines = text.splitlines(), result.updated.splitlines()
    assert len(old_lines) == len(new_lines)
    changed_lines = {c.line for c in result.changes}
    for n, (a, b) in enumerate(zip(old_lines, new_lines, strict=True), start=1):
        if n not in changed_lines:
            assert a == b
    assert edit_text("f.yaml", result.updated, REQUEST).changes == ()


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200).map(
        lambda t: t + ' # {"$imagepolicy": "ns:app"} ghcr.io/org/app'
    )
)
def test_edit_never_raises_on_arbitrary_text(text: str) -> None:
    result = edit_text("f.yaml", text, REQUEST)
    assert result.updated == text or result.changes
