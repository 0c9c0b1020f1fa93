"""Render of hostile or broken sources: incomplete manifests, duplicates, YAML bombs, Secret data in messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import RenderError
from reconciler.model import TRACKING_LABEL
from reconciler.render import render

SECRET_VALUES = ("hunter2", "aHVudGVyMg", "s3cr3t-t0ken", "czNjcjN0LXQwa2Vu")  # plain and base64


def _render(tmp_path: Path, **files: str) -> list[Any]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return render(tmp_path, "app", TRACKING_LABEL)


@pytest.mark.parametrize(
    "text",
    [
        "metadata: {name: b}\ndata: {k: v}\n",
        "apiVersion: v1\nkind: List\nitems:\n- metadata: {name: b}\n  data: {k: v}\n",
        json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "metadata": {"name": "b"}}]}),
        "apiVersion: v1\nkind: ConfigMapList\nitems: [just-a-string]\n",
    ],
    ids=["no-apiVersion-no-kind", "in-a-List", "no-kind-in-a-List-json", "a-List-item-that-is-no-object"],
)
def test_a_manifest_missing_apiversion_and_kind_is_a_render_error_not_ignored(tmp_path: Path, text: str) -> None:
    with pytest.raises(RenderError, match=r"b\.yaml:1"):
        _render(tmp_path, **{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", "b.yaml": text})


def test_documents_that_are_not_manifests_are_still_ignored(tmp_path: Path) -> None:
    out = _render(
        tmp_path, **{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nsettings: {x: 1}\n---\n- 1\n"}
    )
    assert [m.key.name for m in out] == ["a"]


SECRET_NO_KIND = """apiVersion: v1
metadata:
  name: creds
type: Opaque
data:
  password: aHVudGVyMg==
stringData:
  token: s3cr3t-t0ken
"""


@pytest.mark.parametrize(
    "text",
    [
        SECRET_NO_KIND,
        SECRET_NO_KIND.replace("apiVersion: v1\n", ""),
        "apiVersion: v1\nkind: List\nitems:\n"
        + "".join(f"- {line}\n" if i == 0 else f"  {line}\n" for i, line in enumerate(SECRET_NO_KIND.splitlines())),
        SECRET_NO_KIND + "data: {password: czNjcjN0LXQwa2Vu}\n",  # a duplicate key quotes both values
        SECRET_NO_KIND.replace("type: Opaque", "type: [Opaque"),  # a syntax error
    ],
    ids=["no-kind", "no-apiVersion-no-kind", "in-a-List", "duplicate-key", "syntax-error"],
)
def test_render_errors_never_show_secret_data(tmp_path: Path, text: str) -> None:
    with pytest.raises(RenderError) as info:
        _render(tmp_path, **{"s.yaml": text})
    message = str(info.value)
    assert "s.yaml" in message
    for value in SECRET_VALUES:
        assert value not in message


def test_one_function_names_every_document_by_shape_and_identity_only() -> None:
    from reconciler.model import describe_document

    doc = {"apiVersion": "v1", "metadata": {"name": "creds", "namespace": "prod"}, "data": {"password": "aHVudGVyMg=="}}
    text = describe_document(doc)
    assert text == "a mapping with keys apiVersion, metadata, data (apiVersion v1, namespace prod, name creds)"
    assert describe_document(["aHVudGVyMg=="]) == "a sequence, not a mapping"
    assert describe_document("aHVudGVyMg==") == "a scalar, not a mapping"


def test_yaml_errors_keep_the_line_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as info:
        _render(tmp_path, **{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\ndata: {k: w}\n"})
    message = str(info.value)
    assert "cm.yaml" in message and "line 5" in message and 'duplicate key "data"' in message, message
    with pytest.raises(
        RenderError, match=r"cm\.yaml: not valid YAML: line 4, column 1: .*\(while parsing a flow mapping at line 3\)"
    ):
        _render(tmp_path, **{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n"})


def _laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n" + "".join(f"  {line}\n" for line in lines)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (_laughs(9), "expands to more than"),  # ~500 bytes, 9^9 strings once expanded: MemoryError before
        (_laughs(7), "expands to more than"),  # 9^7 strings: was sent to the API server
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\nx: " + "[" * 50_000 + "]" * 50_000, "nested deeper"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  s: &s "
            + "x" * 100_000
            + "\n  l: ["
            + ",".join(["*s"] * 200)
            + "]\n",
            "characters of text",
        ),
    ],
    ids=["billion-laughs", "nine-to-the-seventh", "nested-50000-deep", "a-long-string-aliased-200-times"],
)
def test_yaml_bombs_are_refused_at_render(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(RenderError, match=rf"bomb\.yaml: refused, over a render limit: line \d+, column \d+: .*{why}"):
        _render(tmp_path, **{"bomb.yaml": text})


def test_a_recursive_alias_is_a_render_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="recursive alias"):
        _render(tmp_path, **{"r.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: r}\ndata: &d {k: *d}\n"})


def test_aliases_within_the_limits_render(tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, labels: &l {team: a}, annotations: *l}\n"
    (m,) = _render(tmp_path, **{"ok.yaml": text})
    assert m.body["metadata"]["annotations"] == {"team": "a"}
