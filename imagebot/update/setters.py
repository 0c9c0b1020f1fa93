"""Flux image-policy setter markers: ``# {"$imagepolicy": "NS:NAME[:tag|:name|:digest]"}``.

A marker is a line comment after a scalar. As in Flux (kyaml), the comment's leading ``#``s
are stripped and the rest must be a JSON object of strings whose ``$imagepolicy`` names the
setter; the scalar gets the policy's whole reference (``name:tag`` or ``name:tag@digest``), its
tag, its name or its digest. A bare ``NAME`` is accepted too, as a policy REF given bare or
as the one policy of that name in any namespace. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from imagebot.refs import ImageRef
from imagebot.update.model import Problem, ProblemKind, Target
from imagebot.update.plan import SetValue
from imagebot.update.yamlscan import Scan

TOKEN = "$imagepolicy"
_COMMENT = re.compile(r"[ \t]+(#.*?)[ \t]*\r?$")
_FIELDS = {"tag": Target.SETTER_TAG, "name": Target.SETTER_NAME, "digest": Target.SETTER_DIGEST}


def marker_in_comment(comment: str) -> str | None:
    """The setter named by a comment (``# {...}``), or None when it is not a marker."""
    body = comment.lstrip("#").strip()
    if TOKEN not in body:
        return None
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
        return None
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        return None
    name = obj.get(TOKEN)
    return name or None


def trailing_comment(text: str, end: int) -> str | None:
    """The comment that follows position ``end`` on its line, if only blanks stand between."""
    nl = text.find("\n", end)
    rest = text[end : len(text) if nl < 0 else nl]
    m = _COMMENT.fullmatch(rest)
    return m.group(1) if m else None


def resolve(setter: str, policies: Mapping[str, ImageRef]) -> tuple[str, Target] | None:
    """Map a marker's setter name to (policy REF, target), or None when no policy matches."""
    candidates: list[tuple[str, Target]] = [(setter, Target.SETTER)]
    head, sep, tail = setter.rpartition(":")
    if sep and tail in _FIELDS:
        candidates.append((head, _FIELDS[tail]))
    for ref, target in candidates:
        if ref in policies:
            return ref, target
    for ref, target in candidates:  # a bare marker name matches a unique namespaced policy of that name
        if ":" not in ref:
            named = [k for k in policies if k.rpartition(":")[2] == ref]
            if len(named) == 1:
                return named[0], target
    return None


def value_for(target: Target, image: ImageRef) -> str | None:
    if target is Target.SETTER:
        return str(image)
    if target is Target.SETTER_TAG:
        return image.tag
    if target is Target.SETTER_NAME:
        return image.name
    return image.digest


def plan_setters(file: str, text: str, scan: Scan, policies: Mapping[str, ImageRef]) -> tuple[list[SetValue], list[Problem]]:
    edits: list[SetValue] = []
    problems: list[Problem] = []
    for s in scan.scalars:
        comment = trailing_comment(text, s.end)
        if comment is None:
            continue
        setter = marker_in_comment(comment)
        if setter is None:
            continue
        resolved = resolve(setter, policies)
        if resolved is None:
            continue
        ref, target = resolved
        value = value_for(target, policies[ref])
        if value is None:
            what = "tag" if target is Target.SETTER_TAG else "digest"
            problems.append(
                Problem(
                    file,
                    s.line,
                    ProblemKind.INPUT,
                    f"marker {setter!r} needs a {what}, but --policy {ref}={policies[ref]} has none",
                    (ref,),
                )
            )
            continue
        edits.append(SetValue(s, value, target, ref))
    return edits, problems


def marker_setters(text: str) -> list[tuple[int, str]]:
    """(1-based line, setter name) of each marker comment, found line by line (files that cannot be parsed)."""
    found = []
    for i, line in enumerate(text.splitlines(), start=1):
        if TOKEN in line:
            pos = line.find("#")
            while pos >= 0:
                setter = marker_in_comment(line[pos:].rstrip())
                if setter is not None:
                    found.append((i, setter))
                    break
                pos = line.find("#", pos + 1)
    return found
