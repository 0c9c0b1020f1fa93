"""The tree walk (symlinks, modes, atomic writes) and the verification that guards every write."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from imagebot import refs
from imagebot.cli import main
from imagebot.update import EditRequest, ImageUpdate, ProblemKind, edit_text, walk
from imagebot.update import engine as engine_module

MARKED = 'image: ghcr.io/org/app:1.0 # {"$imagepolicy": "ns:app"}\n'
REQUEST = EditRequest(policies={"ns:app": refs.parse("ghcr.io/org/app:2.0")})


def test_symlinks_outside_the_tree_and_dangling_links_are_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(MARKED)
    root = tmp_path / "repo"
    root.mkdir()
    (root / "inside.yaml").write_text(MARKED)
    (root / "escape.yaml").symlink_to(outside)
    (root / "dangling.yaml").symlink_to(tmp_path / "nope.yaml")
    (root / "alias.yml").symlink_to(root / "inside.yaml")
    cs = walk.plan_tree(root, REQUEST)
    walk.apply(root, cs)
    assert outside.read_text() == MARKED, "a file outside the tree must never be written"
    assert (root / "inside.yaml").read_text() == MARKED.replace("1.0", "2.0")
    assert (root / "alias.yml").is_symlink(), "a link inside the tree stays a link"
    messages = {p.file: p.message for p in cs.problems}
    assert "outside the tree" in messages["escape.yaml"] and "dangling" in messages["dangling.yaml"]
    assert len(cs.changes) == 1, "a file reached twice is edited once"


def test_write_keeps_file_mode_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(MARKED)
    os.chmod(f, 0o640)
    walk.apply(tmp_path, walk.plan_tree(tmp_path, REQUEST))
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml"]


@pytest.mark.parametrize("durable", [True, False], ids=["user tree: rename", "work tree: in place"])
def test_both_ways_of_writing_give_the_same_file_and_stay_inside_the_tree(tmp_path: Path, durable: bool) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "outside.yaml"
    tree.mkdir()
    f = tree / "a.yaml"
    f.write_text(MARKED)
    os.chmod(f, 0o640)
    inode = f.stat().st_ino
    cs = walk.plan_tree(tree, REQUEST)
    walk.apply(tree, cs, durable=durable)
    assert f.read_text() == cs.changed_files[0].updated and stat.S_IMODE(f.stat().st_mode) == 0o640
    assert (f.stat().st_ino == inode) is not durable  # in place keeps the inode; the durable way renames over it
    assert sorted(p.name for p in tree.iterdir()) == ["a.yaml"]
    outside.write_text(MARKED)
    f.unlink()
    f.symlink_to(outside)  # the file became a link leaving the tree between plan and write
    with pytest.raises(OSError, match="outside"):
        walk.apply(tree, cs, durable=durable)
    assert outside.read_text() == MARKED


def test_only_yaml_and_kustomization_files_are_considered(tmp_path: Path) -> None:
    for name in ["a.yaml", "b.yml", "Kustomization", "c.json", "d.yaml.bak", "README.md"]:
        (tmp_path / name).write_text(MARKED)
    walk.apply(tmp_path, walk.plan_tree(tmp_path, REQUEST))
    changed = sorted(p.name for p in tmp_path.iterdir() if "2.0" in p.read_text())
    assert changed == ["Kustomization", "a.yaml", "b.yml"]


def test_edit_that_fails_verification_leaves_file_untouched_and_exits_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.yaml").write_text(MARKED)
    (tmp_path / "good.yaml").write_text(MARKED.replace("ns:app", "ns:other"))
    real_render = engine_module.render

    def broken(value: str, style: str, flow: bool = False) -> str | None:
        return real_render(value, style, flow) + ": oops" if value == "ghcr.io/org/app:2.0" else real_render(value, style, flow)  # type: ignore[operator]

    monkeypatch.setattr(engine_module, "render", broken)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["set", str(tmp_path), "--policy", "ns:app=ghcr.io/org/app:2.0", "--policy", "ns:other=ghcr.io/org/app:3.0"],
        out=out,
        err=err,
    )
    assert code == 4
    assert (tmp_path / "bad.yaml").read_text() == MARKED
    assert "3.0" in (tmp_path / "good.yaml").read_text(), "other files are still written and reported"
    assert "verify" in err.getvalue()


def test_invalid_yaml_with_a_marker_is_reported_not_raised() -> None:
    result = edit_text("x.yaml", "a: [unclosed\n" + MARKED, REQUEST)
    assert result.updated == result.original
    assert [p.kind for p in result.problems] == [ProblemKind.PARSE]


def test_conflicting_updates_for_one_field_apply_neither() -> None:
    text = 'image: ghcr.io/org/app:1.0 # {"$imagepolicy": "ns:app"}\n'
    request = EditRequest(
        policies={"ns:app": refs.parse("ghcr.io/org/app:2.0")},
        images=(ImageUpdate(refs.parse_name("ghcr.io/org/app"), refs.parse("ghcr.io/org/app:3.0")),),
    )
    result = edit_text("x.yaml", text, request)
    assert result.updated == text
    assert [p.kind for p in result.problems] == [ProblemKind.CONFLICT]
