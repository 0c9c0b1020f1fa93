"""`imagebot set`: a --policy or --image that matches nothing under PATH is named, and exit 1."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imagebot.cli import main

DEPLOY = """spec:
  containers:
    - name: app
      image: ghcr.io/acme/app:1.0.0 # {"$imagepolicy": "apps:app"}
"""


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "deploy.yaml").write_text(DEPLOY)
    return tmp_path


@pytest.mark.parametrize(
    ("flags", "unmatched"),
    [
        (["--image", "ghcr.io/acme/other=ghcr.io/acme/other:2.0.0"], ["--image ghcr.io/acme/other"]),
        (["--policy", "apps:typo=ghcr.io/acme/app:2.0.0"], ["--policy apps:typo"]),
        (
            ["--image", "ghcr.io/acme/app=ghcr.io/acme/app:1.1.0", "--image", "docker.io/x/y=x/y:1", "--policy", "nope=x/y:1"],
            ["--policy nope", "--image docker.io/x/y"],
        ),
    ],
    ids=["image", "policy", "some-match-others-not"],
)
def test_a_name_that_matches_nothing_is_named_and_exits_1(tree: Path, flags: list[str], unmatched: list[str]) -> None:
    code, _, err = run(["set", str(tree), *flags])
    assert code == 1, err
    for flag in unmatched:
        assert f"imagebot: {flag} matched nothing under {tree}" in err
    assert err.count("matched nothing") == len(unmatched)


def test_the_names_that_matched_are_still_written(tree: Path) -> None:
    code, _, _ = run(["set", str(tree), "--image", "ghcr.io/acme/app=ghcr.io/acme/app:1.1.0", "--image", "x/y=x/y:1"])
    assert code == 1
    assert "ghcr.io/acme/app:1.1.0" in (tree / "deploy.yaml").read_text()


@pytest.mark.parametrize(
    "flags",
    [
        ["--image", "ghcr.io/acme/app=ghcr.io/acme/app:1.1.0"],
        ["--image", "ghcr.io/acme/app=ghcr.io/acme/app:1.0.0"],  # already holds it: matched, no change
        ["--policy", "apps:app=ghcr.io/acme/app:1.0.0"],
        ["--policy", "apps:app=ghcr.io/acme/app:1.2.0", "--dry-run"],
    ],
    ids=["changed", "already-current", "policy-current", "policy-dry-run"],
)
def test_every_name_matching_something_exits_0(tree: Path, flags: list[str]) -> None:
    code, _, err = run(["set", str(tree), *flags])
    assert code == 0, err
    assert "matched nothing" not in err
