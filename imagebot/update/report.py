"""Render a change set for people (text, unified diff) and programs (JSON). Pure."""

from __future__ import annotations

import json

from imagebot.update.model import ChangeSet


def as_text(cs: ChangeSet) -> str:
    lines = [f"{c.file}:{c.line}: {c.target} {c.subject} {c.field}: {c.old or '(new)'} -> {c.new}" for c in cs.changes]
    if not lines:
        lines.append("no change")
    return "\n".join(lines)


def problems_text(cs: ChangeSet) -> str:
    return "\n".join(f"{p.file}{f':{p.line}' if p.line else ''}: {p.kind}: {p.message}" for p in cs.problems)


def as_json(cs: ChangeSet, written: list[str] | None = None) -> str:
    return json.dumps(
        {
            "changes": [
                {
                    "file": c.file,
                    "line": c.line,
                    "target": str(c.target),
                    "subject": c.subject,
                    "field": c.field,
                    "old": c.old,
                    "new": c.new,
                }
                for c in cs.changes
            ],
            "problems": [{"file": p.file, "line": p.line, "kind": str(p.kind), "message": p.message} for p in cs.problems],
            "files_changed": [e.file for e in cs.changed_files],
            "written": written if written is not None else [],
        },
        indent=2,
    )


def unified_diff(cs: ChangeSet) -> str:
    out: list[str] = []
    for e in cs.changed_files:
        out.extend(
            __import__("difflib").unified_diff(
                e.original.splitlines(keepends=True), e.updated.splitlines(keepends=True), f"a/{e.file}", f"b/{e.file}"
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)
