"""Pull request bodies and commit trailers that explain each change: golden texts, links, escaping, the limit."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from imagebot import refs
from imagebot.gitops import explain
from imagebot.gitops.message import Templates, render
from imagebot.update import Change, Target
from imagebot.update.model import Passed, Provenance, Why

GOLDEN = Path(__file__).parent / "golden"
OLD_D = "sha256:" + "a" * 64
NEW_D = "sha256:" + "b" * 64
CHANGES = (
    Change(
        "apps/a.yaml",
        10,
        Target.SETTER,
        "apps:app",
        "spec.x.image",
        f"ghcr.io/org/app:1.2.3@{OLD_D}",
        f"ghcr.io/org/app:1.3.0@{NEW_D}",
    ),
    Change("apps/w.yaml", 3, Target.CONTAINER, "nginx", "spec.image", "nginx:1.25", "nginx:1.26"),
)
REQUESTED = {"apps:app": refs.parse(f"ghcr.io/org/app:1.3.0@{NEW_D}"), "nginx": refs.parse("nginx:1.26")}
WHY = {
    "apps:app": Why(
        environment="prod",
        policy="semver ^1",
        reason="newest allowed tag 1.3.0 (signature verified)",
        passed_over=(
            Passed("1.4.0", "signature not verified (no signature)"),
            Passed("1.3.1", "signature not verified (wrong key)"),
        ),
        signature="verified (key cosign.pub)",
        old_tag="1.2.3",
        old_digest=OLD_D,
        new_digest=NEW_D,
        old=Provenance(source="https://github.com/org/app", revision="1111111111111111111111111111111111111111"),
        new=Provenance(
            source="https://github.com/org/app.git",
            revision="2222222222222222222222222222222222222222",
            created="2026-11-28T10:00:00Z",
            version="1.3.0",
            platforms=("linux/amd64", "linux/arm64"),
        ),
    ),
    "nginx": Why(
        environment="prod",
        policy="semver ~1.25 || ~1.26",
        reason="newest allowed tag 1.26",
        signature="not required",
        new=Provenance(unavailable="registry docker.io: HTTP 429 (rate limited)"),
    ),
}


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("IMAGEBOT_REGOLD"):
        path.write_text(text)
    assert text == path.read_text()


def test_body_and_trailers_match_the_golden_texts() -> None:
    r = render(CHANGES, REQUESTED, environment="prod", why=WHY)
    _golden("body.md", r.body)
    _golden("commit.txt", r.commit_message)


def test_each_image_is_explained_once_for_its_compare_link_and_its_section(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = explain.explain

    def counting(image: str, old: str, new: str, why: Why) -> explain.Explained:
        calls.append(image)
        return real(image, old, new, why)

    monkeypatch.setattr(explain, "explain", counting)
    r = render(CHANGES, REQUESTED, environment="prod", why=WHY)
    assert sorted(calls) == ["ghcr.io/org/app", "nginx"]
    assert "/compare/1111111111111111111111111111111111111111...2222222222222222222222222222222222222222" in r.body


def test_rendering_does_not_depend_on_change_or_mapping_order() -> None:
    a = render(CHANGES, REQUESTED, environment="prod", why=WHY)
    b = render(tuple(reversed(CHANGES)), dict(reversed(REQUESTED.items())), environment="prod", why=dict(reversed(WHY.items())))
    assert a == b


def test_without_facts_the_texts_are_what_they_were() -> None:
    r = render(CHANGES, REQUESTED, environment="prod")
    assert "Rollback:" not in r.commit_message and "Roll back" not in r.body and "####" not in r.body


def test_trailers_are_the_last_paragraph_git_reads_back() -> None:
    r = render(CHANGES, REQUESTED, environment="prod", why=WHY)
    last = r.commit_message.rstrip("\n").split("\n\n")[-1].splitlines()
    assert all(re.match(r"^[A-Za-z-]+: \S", line) for line in last), last
    assert last[-1].startswith("Rollback: git revert <this commit>")
    assert (
        "Image-Source: https://github.com/org/app/compare/1111111111111111111111111111111111111111...2222222222222222222222222222222222222222"
        in last
    )


@pytest.mark.parametrize(
    ("source", "old", "new", "url"),
    [
        ("https://github.com/o/r", "a1", "b2", "https://github.com/o/r/compare/a1...b2"),
        ("git@github.com:o/r.git", "a1", "b2", "https://github.com/o/r/compare/a1...b2"),
        ("https://gitlab.com/g/sub/r/", "a1", "b2", "https://gitlab.com/g/sub/r/-/compare/a1...b2"),
        ("git+https://bitbucket.org/o/r.git", "a1", "b2", "https://bitbucket.org/o/r/branches/compare/b2%0Da1"),
        ("https://codeberg.org/o/r", "a1", "b2", "https://codeberg.org/o/r/compare/a1...b2"),
        ("https://gitea.example.com/o/r", "a1", "b2", "https://gitea.example.com/o/r/compare/a1...b2"),
        ("https://github.com/o/r", "", "b2", "https://github.com/o/r/commit/b2"),
        ("https://gitlab.example.com/o/r", "a1", "a1", "https://gitlab.example.com/o/r/-/commit/a1"),
        ("https://git.example.com/o/r", "a1", "b2", ""),  # unknown host: plain text
        ("https://github.com/o/r", "a1", "b2) [x](https://evil", ""),  # not a revision
        ("javascript:alert(1)//github.com/o/r", "a1", "b2", ""),
        ("https://github.com/o/r?x=(1)", "a1", "b2", ""),
    ],
)
def test_compare_links_for_each_forge(source: str, old: str, new: str, url: str) -> None:
    assert explain.compare_url(source, old, new) == url


def test_unknown_host_source_is_plain_text_and_free_text_is_inert() -> None:
    why = Why(policy="regex `^v(?<n>.*)$` | [x](y)", reason="*newest*",
              new=Provenance(source="https://git.example.com/o/r", revision="abc", created="<script>"))  # fmt: skip
    body = render(CHANGES[1:], REQUESTED, why={"nginx": why}).body
    assert "- **source**: https://git.example.com/o/r abc" in body.replace("\\", "")
    assert "[x](y)" not in body and "\\[x\\](y)" in body and "<script>" not in body and "\\`" in body and "\\|" in body


def test_long_bodies_drop_whole_sections_with_a_note() -> None:
    many = tuple(Change(f"f{i}.yaml", 1, Target.CONTAINER, f"img{i:03}", "spec.image", f"img{i:03}:1", f"img{i:03}:2")
                 for i in range(300))  # fmt: skip
    req = {f"img{i:03}": refs.parse(f"img{i:03}:2") for i in range(300)}
    why = {k: Why(policy="semver", reason="x" * 300, passed_over=tuple(Passed(f"9.{j}", "excluded by '-rc'") for j in range(30)))
           for k in req}  # fmt: skip
    r = render(many, req, why=why, limit=45_000)
    assert len(r.body) <= 45_000
    m = re.search(r"_Details of (\d+) more changes omitted", r.body)
    assert m is not None
    shown = r.body.count("#### ")
    assert shown > 0 and shown + int(m.group(1)) == 300
    assert "(and 20 more)" in r.body  # passed-over tags beyond ten are counted, not listed
    assert r.body.count("<details>") == r.body.count("</details>")


def test_a_body_too_long_even_without_details_is_cut_between_paragraphs() -> None:
    r = render(CHANGES, REQUESTED, Templates(body="{% for n in range(3000) %}para {{ n }}\n\n{% endfor %}"), limit=1000)
    assert len(r.body) <= 1000 and r.body.endswith("characters._\n") and "\n\n_…cut" in r.body


def test_user_templates_see_the_facts() -> None:
    line = "{{ i.image }} {{ i.why.policy if i.why else '-' }} {{ i.compare_url }}\n"
    t = Templates(body="{% for i in images %}" + line + "{% endfor %}")
    body = render(CHANGES, REQUESTED, t, why=WHY).body
    assert "ghcr.io/org/app semver ^1 https://github.com/org/app/compare/" in body
    assert "nginx semver ~1.25 || ~1.26 \n" in body


@pytest.mark.parametrize("environment", ["", "prod"])
@pytest.mark.parametrize(
    "subset",
    [
        (0,),
        (1,),
        (0, 1),
    ],
)
@pytest.mark.parametrize("facts", [False, True])
@pytest.mark.parametrize("limit", [explain.BODY_LIMIT, 1200])
def test_the_python_defaults_render_exactly_the_default_templates(
    environment: str, subset: tuple[int, ...], facts: bool, limit: int
) -> None:
    """The default templates are rendered in Python (no Jinja2 import in a cold run): the same text as Jinja2's."""
    changes = tuple(CHANGES[i] for i in subset)
    many = tuple(Change(f"f{i}.yaml", i, Target.HELM, f"img{i}", "image.tag", "1", "2") for i in range(40))
    for cs in (changes, changes + many):
        req = {**REQUESTED, **{f"img{i}": refs.parse(f"img{i}:2") for i in range(40)}}
        why = {**WHY, **{f"img{i}": Why(policy="semver", reason="r" * 50) for i in range(40)}} if facts else None
        python = render(cs, req, environment=environment, why=why, limit=limit)
        jinja = render(cs, req, environment=environment, why=why, limit=limit, python_defaults=False)
        assert python == jinja
