"""Edit one file's text (pure): screen → scan → plan → splice → verify.

1. Screen: files without the bytes ``$imagepolicy`` or any requested repository name are not
   parsed at all.
2. Templated files (``{{``) are never parsed as YAML; a marker inside one is reported.
3. Plan setter-marker and marker-free edits over the scalar spans of :mod:`yamlscan`.
4. Splice the new value bytes into the original text — nothing else changes.
5. Verify: the new text is re-parsed, and every scalar must be as before except exactly the
   intended ones, which must hold exactly the intended values. Otherwise the file is left
   untouched and the failure reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from imagebot.update.images import mentioned, plan_images, screen_tokens
from imagebot.update.model import Change, EditRequest, FileEdit, ObjectIdentity, Place, Problem, ProblemKind
from imagebot.update.plan import Edit, SetValue, field_name
from imagebot.update.setters import TOKEN, marker_setters, plan_setters, resolve
from imagebot.update.values import render
from imagebot.update.yamlscan import Path, Scan, YamlLimitError, YamlSyntaxError, scan

BOM = "\ufeff"


def _line_ending(text: str) -> str:
    nl = text.find("\n")
    return "\r\n" if nl > 0 and text[nl - 1] == "\r" else "\n"


def _dedupe(file: str, edits: Sequence[Edit]) -> tuple[list[Edit], list[Problem]]:
    """One edit per place; two different values for one place is a conflict (neither is applied)."""
    by_place: dict[tuple[int, Path], list[Edit]] = {}
    for e in edits:
        key = (e.scalar.doc, e.scalar.path) if isinstance(e, SetValue) else (e.doc, e.path)
        by_place.setdefault(key, []).append(e)
    out: list[Edit] = []
    problems: list[Problem] = []
    for group in by_place.values():
        values = {e.value for e in group}
        if len(values) > 1:
            first = group[0]
            line = first.scalar.line if isinstance(first, SetValue) else first.line
            subjects = tuple(sorted({e.subject for e in group}))
            problems.append(
                Problem(file, line, ProblemKind.CONFLICT, f"conflicting values {sorted(values)} for one field", subjects)
            )
            continue
        out.append(group[0])
    return out, problems


def _splice(file: str, text: str, edits: Sequence[Edit]) -> tuple[str, list[Change], list[Problem], dict[tuple[int, Path], str]]:
    """Splice the edits into ``text``; also returns the value each applied edit must show on re-parse."""
    eol = _line_ending(text)
    expected: dict[tuple[int, Path], str] = {}
    pieces: list[tuple[int, int, str]] = []
    changes: list[Change] = []
    problems: list[Problem] = []
    for e in edits:
        if isinstance(e, SetValue):
            s = e.scalar
            if s.value == e.value:
                continue
            if s.shared:
                problems.append(
                    Problem(
                        file,
                        s.line,
                        ProblemKind.ALIASED,
                        f"{field_name(s.path)} is anchored and used through an alias: not edited, update it by hand",
                        (e.subject,),
                    )
                )
                continue
            if s.tag is not None:
                problems.append(
                    Problem(
                        file,
                        s.line,
                        ProblemKind.UNSUPPORTED,
                        f"{field_name(s.path)} carries an explicit tag {s.tag}: not edited",
                        (e.subject,),
                    )
                )
                continue
            rendered = render(e.value, s.style, s.flow)
            if rendered is None:
                problems.append(
                    Problem(
                        file, s.line, ProblemKind.UNSUPPORTED, f"{field_name(s.path)} is a block scalar: not edited", (e.subject,)
                    )
                )
                continue
            pieces.append((s.start, s.end, rendered))
            expected[(s.doc, s.path)] = e.value
            changes.append(Change(file, s.line, e.target, e.subject, field_name(s.path), s.value, e.value, s.doc))
        else:
            rendered = render(e.value, "")
            assert rendered is not None
            pieces.append((e.at, e.at, f"{eol}{e.indent}{e.key}: {rendered}"))
            expected[(e.doc, e.path)] = e.value
            changes.append(Change(file, e.line, e.target, e.subject, field_name(e.path), "", e.value, e.doc))
    pieces.sort()
    out: list[str] = []
    pos = 0
    for start, end, new in pieces:
        out.append(text[pos:start])
        out.append(new)
        pos = end
    out.append(text[pos:])
    changes.sort(key=lambda c: (c.line, c.field))
    return "".join(out), changes, problems, expected


def verify(before: Scan, after_text: str, expected: dict[tuple[int, Path], str]) -> str | None:
    """None when ``after_text`` differs from ``before`` in exactly the ``expected`` scalars."""
    try:
        after = scan(after_text)
    except YamlSyntaxError as exc:
        return f"the edited text no longer parses: {exc}"
    old = {k: s.value for k, s in before.by_path().items()}
    new = {k: s.value for k, s in after.by_path().items()}
    want = {**old, **expected}
    if new != want:
        wrong = sorted(set(new.items()) ^ set(want.items()), key=str)[:3]
        return f"re-parse differs from the intended change at {wrong}"
    if before.documents != after.documents:
        return "the number of YAML documents changed"
    return None


def edit_text(file: str, text: str, request: EditRequest) -> FileEdit:
    """Apply ``request`` to one file's text. ``file`` is a label (its path relative to the tree)."""
    file_name = file.rsplit("/", 1)[-1]
    has_marker = bool(request.policies) and TOKEN in text
    tokens = screen_tokens(request.images)
    has_name = any(t in text for t in tokens)
    if not has_marker and not has_name:
        return FileEdit(file, text, text)
    if "{{" in text:
        return FileEdit(file, text, text, problems=_templated(file, text, request, has_marker, has_name))
    bom = text.startswith(BOM)
    body = text[1:] if bom else text
    try:
        parsed = scan(body)
    except YamlSyntaxError as exc:
        where = f" (line {exc.line})" if exc.line else ""
        concerned = tuple(sorted({ref for _, ref in _markers(text, request)} | set(mentioned(text, request.images))))
        what = "refused" if isinstance(exc, YamlLimitError) else "not valid YAML"
        problem = Problem(file, exc.line, ProblemKind.PARSE, f"{what}{where}: {exc}", concerned)
        return FileEdit(file, text, text, problems=(problem,))
    edits: list[Edit] = []
    problems: list[Problem] = []
    if has_marker:
        setter_edits, setter_problems = plan_setters(file, body, parsed, request.policies)
        edits += setter_edits
        problems += setter_problems
    if has_name:
        image_edits, image_problems = plan_images(file, file_name, body, parsed, request.images, request.helm_keys)
        edits += image_edits
        problems += image_problems
    edits, conflicts = _dedupe(file, edits)
    problems += conflicts
    new_body, changes, splice_problems, expected = _splice(file, body, edits)
    problems += splice_problems
    if not changes:
        return FileEdit(file, text, text, problems=tuple(problems), places=_places(file, edits, set()))
    failure = verify(parsed, new_body, expected)
    if failure is not None:
        subjects = tuple(sorted({c.subject for c in changes}))
        problems.append(Problem(file, None, ProblemKind.VERIFY, f"edit not verified, file left untouched: {failure}", subjects))
        return FileEdit(file, text, text, problems=tuple(problems), places=_places(file, edits, set()))
    identities = _identities(parsed)
    changes = [replace(c, object=identities.get(c.doc, ObjectIdentity())) for c in changes]
    return FileEdit(
        file, text, (BOM if bom else "") + new_body, tuple(changes), tuple(problems), _places(file, edits, set(expected))
    )


_IDENTITY_PATHS: dict[Path, int] = {("apiVersion",): 0, ("kind",): 1, ("metadata", "name"): 2, ("metadata", "namespace"): 3}


def _identities(parsed: Scan) -> dict[int, ObjectIdentity]:
    """Each document's apiVersion, kind, metadata.name and metadata.namespace (where they are strings)."""
    found: dict[int, list[str]] = {}
    for s in parsed.scalars:
        i = _IDENTITY_PATHS.get(s.path)
        if i is not None:
            found.setdefault(s.doc, ["", "", "", ""])[i] = s.value
    return {doc: ObjectIdentity(*v) for doc, v in found.items()}


def _places(file: str, edits: Sequence[Edit], written: set[tuple[int, Path]]) -> tuple[Place, ...]:
    """Every place an edit targets, with what it holds now and whether this edit writes it."""
    out = []
    for e in edits:
        if isinstance(e, SetValue):
            key, line, value = (e.scalar.doc, e.scalar.path), e.scalar.line, e.scalar.value
            out.append(Place(file, line, field_name(e.scalar.path), e.subject, value, e.value, key in written))
        else:
            out.append(Place(file, e.line, field_name(e.path), e.subject, None, e.value, (e.doc, e.path) in written))
    return tuple(out)


def _markers(text: str, request: EditRequest) -> list[tuple[int, str]]:
    """(line, policy REF) of each marker naming a requested policy, found without parsing."""
    if not request.policies or TOKEN not in text:
        return []
    return [(line, r[0]) for line, setter in marker_setters(text) if (r := resolve(setter, request.policies)) is not None]


def _templated(file: str, text: str, request: EditRequest, has_marker: bool, has_name: bool) -> tuple[Problem, ...]:
    """A templated file is never edited: say so for each marker, and for each requested image it spells out."""
    problems = []
    if has_marker:
        resolved = dict(_markers(text, request))
        for line, _ in marker_setters(text):
            subjects = (resolved[line],) if line in resolved else ()
            problems.append(
                Problem(file, line, ProblemKind.TEMPLATE, "marker inside a templated file ({{ }}): not edited", subjects)
            )
    if has_name:
        for name in mentioned(text, request.images):
            problems.append(
                Problem(
                    file,
                    None,
                    ProblemKind.TEMPLATE,
                    f"{name} is referenced inside a templated file ({{{{ }}}}): not edited",
                    (name,),
                )
            )
    return tuple(problems)
