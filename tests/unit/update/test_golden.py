"""Golden directories: original/ → expected/, byte for byte, and a second run changes nothing."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from imagebot import refs
from imagebot.cli import main
from imagebot.update import EditRequest, ImageUpdate, walk

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p.name for p in TESTDATA.iterdir() if p.is_dir())


def load(case: str) -> tuple[EditRequest, set[str]]:
    spec = json.loads((TESTDATA / case / "request.json").read_text())
    req = spec["request"]
    policies = {k: refs.parse(v, require_version=True) for k, v in req.get("policies", {}).items()}
    images = tuple(ImageUpdate(refs.parse_name(k), refs.parse(v, require_version=True)) for k, v in req.get("images", {}).items())
    return EditRequest(policies=policies, images=images), set(spec["problems"])


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES)
def test_rewrite_matches_expected_bytes(case: str, tmp_path: Path) -> None:
    request, expected_problems = load(case)
    work = tmp_path / "repo"
    shutil.copytree(TESTDATA / case / "original", work)
    cs = walk.plan_tree(work, request)
    walk.apply(work, cs)
    assert tree(work) == tree(TESTDATA / case / "expected")
    assert {str(p.kind) for p in cs.problems} == expected_problems
    again = walk.plan_tree(work, request)
    assert again.changes == () and again.changed_files == (), "second run must change nothing"


@pytest.mark.parametrize("case", CASES)
def test_unchanged_files_keep_their_mtime(case: str, tmp_path: Path) -> None:
    request, _ = load(case)
    work = tmp_path / "repo"
    shutil.copytree(TESTDATA / case / "original", work)
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    original, expected = tree(TESTDATA / case / "original"), tree(TESTDATA / case / "expected")
    walk.apply(work, walk.plan_tree(work, request))
    for p, mtime in before.items():
        rel = p.relative_to(work).as_posix()
        if original[rel] == expected[rel]:
            assert p.stat().st_mtime_ns == mtime, f"{rel} was rewritten though nothing changed"


def test_cli_set_rewrites_and_reports_changes(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(TESTDATA / "setters-whole-and-tag" / "original", work)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["set", str(work), "--policy", "flux-system:podinfo=ghcr.io/stefanprodan/podinfo:5.2.1", "--json"], out=out, err=err
    )
    assert code == 0, err.getvalue()
    doc = json.loads(out.getvalue())
    assert [(c["line"], c["target"], c["old"], c["new"]) for c in doc["changes"]] == [
        (11, "setter", "ghcr.io/stefanprodan/podinfo:5.0.0", "ghcr.io/stefanprodan/podinfo:5.2.1"),
        (13, "setter:tag", "ghcr.io/stefanprodan/podinfo:5.0.0", "5.2.1"),
    ]
    assert tree(work) == tree(TESTDATA / "setters-whole-and-tag" / "expected")


def test_cli_dry_run_prints_diff_and_writes_nothing(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(TESTDATA / "helm-values" / "original", work)
    before = tree(work)
    out, err = io.StringIO(), io.StringIO()
    assert main(["set", str(work), "--image", "ghcr.io/org/app=ghcr.io/org/app:1.1", "--dry-run"], out=out, err=err) == 0
    assert tree(work) == before
    assert '-  tag: 1.0   # unquoted on purpose\n+  tag: "1.1"   # unquoted on purpose\n' in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "ns:app=ghcr.io/org/app"], "neither a tag nor a digest"),
        (["--policy", "ns:app"], "expected REF=IMAGE"),
        (["--policy", "NS:App=ghcr.io/org/app:1"], "REF must be"),
        (["--policy", "ns:app=ghcr.io/org/app:bad tag"], "whitespace"),
        (["--policy", "ns:app=ghcr.io/org/app:1\nx: y"], "whitespace"),
        (["--image", "ghcr.io/org/app:1=ghcr.io/org/app:2"], "without tag or digest"),
        (["--image", "ghcr.io/org/app=ghcr.io/org/app:-x"], "invalid tag"),
        (["--image", "ghcr.io/org/app=ghcr.io/org/app@sha256:abc"], "invalid digest"),
        ([], "nothing to set"),
    ],
    ids=[
        "image_without_tag",
        "missing_image",
        "bad_ref",
        "space_in_tag",
        "yaml_injection",
        "name_with_tag",
        "bad_tag",
        "short_digest",
        "nothing",
    ],
)
def test_cli_set_rejects_bad_input_with_exit_2_and_writes_nothing(args: list[str], message: str, tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(TESTDATA / "setters-name-tag-digest-bare" / "original", work)
    before = tree(work)
    out, err = io.StringIO(), io.StringIO()
    assert main(["set", str(work), *args], out=out, err=err) == 2
    assert message in err.getvalue()
    assert tree(work) == before


def test_tag_setter_fed_digest_only_image_is_exit_2_and_nothing_written(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(TESTDATA / "setters-name-tag-digest-bare" / "original", work)
    before = tree(work)
    out, err = io.StringIO(), io.StringIO()
    digest = "sha256:" + "c" * 64
    assert main(["set", str(work), "--policy", f"apps:app=ghcr.io/org/app@{digest}"], out=out, err=err) == 2
    assert "needs a tag" in err.getvalue()
    assert tree(work) == before
