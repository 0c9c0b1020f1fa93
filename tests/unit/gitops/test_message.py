"""Commit and PR text are rendered from the change set alone: deterministic and useful by default."""

from __future__ import annotations

import pytest

from imagebot import refs
from imagebot.errors import ConfigError
from imagebot.gitops.message import Templates, render
from imagebot.update import Change, Target

D = "sha256:" + "c" * 64
CHANGES = (
    Change("apps/a.yaml", 10, Target.SETTER, "apps:app", "spec.x.image", "ghcr.io/org/app:1.2.3", "ghcr.io/org/app:1.3.0"),
    Change("apps/b.yaml", 4, Target.SETTER_TAG, "apps:app", "image.tag", "1.2.3", "1.3.0"),
)
REQUESTED = {"apps:app": refs.parse("ghcr.io/org/app:1.3.0")}


def test_default_title_names_image_versions_and_environment() -> None:
    r = render(CHANGES, REQUESTED, environment="staging")
    assert r.title == "chore(images): app 1.2.3 → 1.3.0 (staging)"
    assert r.commit_message.startswith(r.title + "\n\n- ghcr.io/org/app: 1.2.3 → 1.3.0\n  apps/a.yaml\n  apps/b.yaml\n")
    assert "| `ghcr.io/org/app` | 1.2.3 | 1.3.0 | — | apps/a.yaml<br>apps/b.yaml |" in r.body


def test_several_images_and_digests() -> None:
    changes = (*CHANGES, Change("c.yaml", 1, Target.CONTAINER, "nginx", "spec.image", "nginx:1.25", f"nginx:1.26@{D}"))
    r = render(changes, {**REQUESTED, "nginx": refs.parse(f"nginx:1.26@{D}")})
    assert r.title == "chore(images): update 2 images"
    assert f"| `nginx` | 1.25 | 1.26 | {D} | c.yaml |" in r.body


def test_rendering_is_deterministic_and_order_independent() -> None:
    a = render(CHANGES, REQUESTED, environment="prod")
    b = render(tuple(reversed(CHANGES)), REQUESTED, environment="prod")
    assert a.title == b.title and a.commit_message == b.commit_message


def test_custom_templates_are_sandboxed_and_strict() -> None:
    r = render(
        CHANGES,
        REQUESTED,
        Templates(title="deploy {{ images[0].short }}@{{ images[0].new }} to {{ environment }}"),
        environment="dev",
    )
    assert r.title == "deploy app@1.3.0 to dev"
    with pytest.raises(ConfigError, match="template"):
        render(CHANGES, REQUESTED, Templates(title="{{ nope }}"))
    with pytest.raises(ConfigError, match="template"):
        render(CHANGES, REQUESTED, Templates(title="{{ images.__class__.__mro__ }}"))
