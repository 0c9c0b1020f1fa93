"""The only file I/O of the update package: find candidate files, read, and write atomically.

Files considered: ``*.yaml``, ``*.yml`` and files named ``Kustomization``. Symlinks are resolved
and followed only when they stay inside the tree; dangling or outside links and unreadable or
non-UTF-8 files are skipped (reported when they would have been candidates). A file reached
twice (through a link) is edited once, at its real path. Writes go to a temporary file in the
same directory, keep the original mode, and replace the original atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagebot.update.engine import edit_text
from imagebot.update.images import screen_tokens
from imagebot.update.model import ChangeSet, EditRequest, FileEdit, Problem, ProblemKind
from imagebot.update.setters import TOKEN
from imagebot.update.yamlscan import MAX_BYTES

log = logging.getLogger(__name__)
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Candidate:
    label: str  # path relative to the root, with '/' separators
    real: Path


def iter_files(root: Path) -> Iterator[Candidate | Problem]:
    root_real = root.resolve()
    seen: set[Path] = set()
    stack = [root_real]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != ".git":
                    subdirs.append(Path(entry.path))  # directory links are not descended: their targets in the tree are
                continue
            name = entry.name
            if not (name.endswith(_SUFFIXES) or name == "Kustomization"):
                continue
            path = Path(entry.path)
            label = path.relative_to(root_real).as_posix()
            if entry.is_symlink():
                try:
                    real = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    yield Problem(label, None, ProblemKind.IO, "dangling or looping symlink: skipped")
                    continue
                if root_real not in real.parents:
                    yield Problem(label, None, ProblemKind.IO, "symlink leads outside the tree: skipped")
                    continue
                if not real.is_file():
                    continue
            elif entry.is_file(follow_symlinks=False):
                real = path  # the walk starts at the real root and never follows links: already real
            else:
                continue
            if real in seen:
                continue
            seen.add(real)
            yield Candidate(label, real)
        stack.extend(reversed(subdirs))


def plan_tree(root: Path, request: EditRequest) -> ChangeSet:
    """Read every candidate under ``root`` and compute its edit; nothing is written."""
    screens = [t.encode() for t in screen_tokens(request.images)]
    if request.policies:
        screens.append(TOKEN.encode())
    edits: list[FileEdit] = []
    for item in iter_files(root):
        if isinstance(item, Problem):
            edits.append(FileEdit(item.file, "", "", problems=(item,)))
            continue
        try:
            with item.real.open("rb") as fh:
                data = fh.read(MAX_BYTES + 1)  # never more than the scanner accepts
        except OSError as exc:
            edits.append(
                FileEdit(item.label, "", "", problems=(Problem(item.label, None, ProblemKind.IO, f"unreadable: {exc.strerror}"),))
            )
            continue
        if len(data) > MAX_BYTES:
            problem = Problem(item.label, None, ProblemKind.IO, f"larger than the limit of {MAX_BYTES:,} bytes: not scanned")
            edits.append(FileEdit(item.label, "", "", problems=(problem,)))
            continue
        if not any(s in data for s in screens):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            edits.append(
                FileEdit(item.label, "", "", problems=(Problem(item.label, None, ProblemKind.IO, "not UTF-8: skipped"),))
            )
            continue
        edits.append(edit_text(item.label, text, request))
    return ChangeSet(tuple(edits))


def reread(root: Path, planned: ChangeSet, request: EditRequest) -> ChangeSet:
    """Read the files of ``planned`` again from disk (after :func:`apply`) and plan the same request.

    Files the walk never read (its own reports: links leaving the tree, unreadable files) keep their
    report; any other file outside the plan passed no screen and holds none of the subjects.
    """
    root_real = root.resolve()
    edits: list[FileEdit] = []
    for e in planned.edits:
        if not e.original:
            edits.append(e)
            continue
        target = (root_real / e.file).resolve()
        try:
            if root_real not in target.parents:
                raise OSError("it resolves outside the tree")
            text = target.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problem = Problem(
                e.file, None, ProblemKind.IO, f"unreadable after the edit: {exc}", tuple(sorted({p.subject for p in e.places}))
            )
            edits.append(FileEdit(e.file, "", "", problems=(problem,)))
            continue
        edits.append(edit_text(e.file, text, request))
    return ChangeSet(tuple(edits))


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file, fsync it, rename it over ``path`` (mode kept): the old or the new file, never half."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_in_place(path: Path, text: str) -> None:
    """Overwrite an existing file (its mode and inode kept): for a work tree the bot owns, where a torn write is
    never committed (the commit follows, re-reads every file first) and the next sync resets the tree."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def apply(root: Path, changeset: ChangeSet, durable: bool = True) -> list[str]:
    """Write every changed file (at its real path inside ``root``); returns the labels written.

    ``durable``: each file is written to a temporary file, fsynced and renamed over the original (a user's tree:
    a crash leaves the old or the new file, never half of one). A git workspace passes False: files are
    overwritten in place — half the cost of 200 temporary files and renames — since the commit that follows
    is what must survive (git writes its objects durably) and a sync resets the work tree.
    """
    root_real = root.resolve()
    written = []
    for edit in changeset.changed_files:
        target = (root_real / edit.file).resolve(strict=True)
        if root_real not in target.parents:
            raise OSError(f"refusing to write {edit.file}: resolves outside {root}")
        if durable:
            write_atomic(target, edit.updated)
        else:
            write_in_place(target, edit.updated)
        written.append(edit.file)
        log.debug("wrote %s (%d changes)", edit.file, len(edit.changes))
    return written


def read_tree(root: Path) -> tuple[dict[str, str], list[Problem]]:
    """The text of every candidate file under ``root`` (for discovery, which has no names to screen by)."""
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for item in iter_files(root):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        try:
            with item.real.open("rb") as fh:
                data = fh.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise OSError(f"larger than the limit of {MAX_BYTES:,} bytes")
            texts[item.label] = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(item.label, None, ProblemKind.IO, f"not scanned: {exc}"))
    return texts, problems
