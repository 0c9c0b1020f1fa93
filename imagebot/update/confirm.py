"""Does the tree hold what was asked? One verdict per requested subject (pure).

A subject is a policy REF (setter markers) or an image name (marker-free updates). Read after
the edit (Renovate's "re-extract to confirm"), the tree holds a subject's value only when at
least one place targets it, every such place holds exactly the requested value, and no file
reported a problem concerning it (an alias, a parse error, a template, a conflict). Anything
else is a skipped edit, with its reason — never "no change": callers record a value as current
only when it is confirmed here. Requested values that break the reference grammar are refused
before any file is read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from imagebot.errors import InvalidReference
from imagebot.refs import ImageRef, parse
from imagebot.update.model import ChangeSet, EditRequest

_MAX_LISTED = 3


@dataclass(frozen=True, slots=True)
class Skipped:
    """A requested subject the tree does not hold after the edit, and why."""

    subject: str
    reason: str
    unmatched: bool = False  # nothing in the tree names it at all (no place, no problem anywhere)


def wanted(request: EditRequest) -> dict[str, str]:
    """Subject → the reference requested for it."""
    out = {ref: str(image) for ref, image in request.policies.items()}
    out.update({u.name.name: str(u.image) for u in request.images})
    return out


def _grammar(image: ImageRef) -> str | None:
    try:
        parse(str(image), require_version=True)
    except InvalidReference as exc:
        return f"refused: {exc}"
    return None


def refuse_invalid(request: EditRequest) -> tuple[EditRequest, tuple[Skipped, ...]]:
    """Split off the subjects whose requested value is no valid reference: they are never written."""
    refused = [Skipped(ref, why) for ref, image in request.policies.items() if (why := _grammar(image))]
    refused += [Skipped(u.name.name, why) for u in request.images if (why := _grammar(u.image))]
    if not refused:
        return request, ()
    out = {s.subject for s in refused}
    policies = {ref: image for ref, image in request.policies.items() if ref not in out}
    images = tuple(u for u in request.images if u.name.name not in out)
    return replace(request, policies=policies, images=images), tuple(refused)


def _where(file: str, line: int | None) -> str:
    return f"{file}:{line}" if line else file


def confirm(cs: ChangeSet, request: EditRequest, *, count_written: bool = True) -> tuple[Skipped, ...]:
    """The subjects of ``request`` that ``cs`` (a plan of the tree) does not show holding their value.

    A place this plan writes counts as holding its value (unless ``count_written`` is off: what the
    tree held before the edit); on a re-read after the write, no place is written and each must
    already hold it.
    """
    unattributed = [p for p in cs.problems if not p.subjects]
    skipped = []
    for subject, value in wanted(request).items():
        concerning = [p for p in cs.problems if subject in p.subjects]
        places = [p for p in cs.places if p.subject == subject]
        stale = [p for p in places if not (p.changed and count_written) and p.value != p.wanted]
        if concerning:
            reason = "; ".join(f"{_where(p.file, p.line)}: {p.message}" for p in concerning[:_MAX_LISTED])
        elif not places:
            reason = f"no reference to {subject} found to set to {value}"
            if not unattributed:
                skipped.append(Skipped(subject, reason, unmatched=True))
                continue
            reason += (
                " (skipped: " + "; ".join(f"{_where(p.file, p.line)}: {p.message}" for p in unattributed[:_MAX_LISTED]) + ")"
            )
        elif stale:
            reason = "; ".join(
                f"{_where(p.file, p.line)}: {p.field} holds {p.value}, not {p.wanted}" for p in stale[:_MAX_LISTED]
            )
        else:
            continue
        skipped.append(Skipped(subject, reason))
    return tuple(skipped)
