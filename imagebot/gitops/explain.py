"""The facts behind each change, as markdown sections of a pull request body and as Git trailers (pure).

Free text (policy reasons, registry annotations) is escaped before it enters markdown, links are built
only from validated parts, and sections are whole markdown blocks so a body cut to GitHub's limit is cut
between them, never inside one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from imagebot.update.model import Provenance, Why

BODY_LIMIT = 65_536  # GitHub's pull request body limit, in characters
MAX_PASSED = 10  # passed-over tags listed per change; the rest are counted
ROLLBACK_PR = (
    "**Roll back**: revert this pull request's merge commit — `git revert -m 1 <merge-sha>` "
    "(after a squash or rebase merge: `git revert <sha>` of its commit)."
)
ROLLBACK_TRAILER = "git revert <this commit> (HEAD right after this push) restores every reference listed above"
_SOURCE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+){2,}/?$")
_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,128}$")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")  # links, emphasis, code, HTML, tables, strikes


class Forge:
    GITHUB = "github"
    GITLAB = "gitlab"
    BITBUCKET = "bitbucket"
    GITEA = "gitea"


def _forge(host: str) -> str | None:
    host = host.lower()
    if host == "github.com" or host.startswith("github."):
        return Forge.GITHUB
    if host == "gitlab.com" or host.startswith("gitlab."):
        return Forge.GITLAB
    if host == "bitbucket.org":
        return Forge.BITBUCKET
    if host in ("codeberg.org", "gitea.com") or host.startswith(("gitea.", "forgejo.")):
        return Forge.GITEA
    return None


def normalize_source(source: str) -> str:
    """``org.opencontainers.image.source`` as an https URL of the repository ("" when it is not one):
    ``git@host:org/repo.git``, ``git+https://…``, a ``.git`` suffix and a trailing slash are accepted."""
    s = source.strip()
    if m := re.match(r"^git@([A-Za-z0-9.-]+):(.+)$", s):
        s = f"https://{m.group(1)}/{m.group(2)}"
    s = s.removeprefix("git+").rstrip("/").removesuffix(".git")
    return s if _SOURCE.match(s) else ""


def compare_url(source: str, old_revision: str, new_revision: str) -> str:
    """The source repository's compare view between two revisions (or the new commit's page when the old one
    is unknown); "" when the host's URL shapes are unknown or a part is not safe to put in a link."""
    base = normalize_source(source)
    if not base or not _REVISION.match(new_revision) or (old_revision and not _REVISION.match(old_revision)):
        return ""
    forge = _forge(urlsplit(base).hostname or "")
    if forge is None:
        return ""
    if not old_revision or old_revision == new_revision:
        return {
            Forge.GITHUB: f"{base}/commit/{new_revision}",
            Forge.GITLAB: f"{base}/-/commit/{new_revision}",
            Forge.BITBUCKET: f"{base}/commits/{new_revision}",
            Forge.GITEA: f"{base}/commit/{new_revision}",
        }[forge]
    return {
        Forge.GITHUB: f"{base}/compare/{old_revision}...{new_revision}",
        Forge.GITLAB: f"{base}/-/compare/{old_revision}...{new_revision}",
        Forge.BITBUCKET: f"{base}/branches/compare/{new_revision}%0D{old_revision}",
        Forge.GITEA: f"{base}/compare/{old_revision}...{new_revision}",
    }[forge]


def md(text: str) -> str:
    """Free text made inert in markdown: one line, markdown's special characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 19 else digest


@dataclass(frozen=True, slots=True)
class Explained:
    """One image's change with its facts, as the templates see it."""

    image: str
    old: str
    new: str
    why: Why
    compare_url: str  # "" when there is no link to give

    @property
    def source_text(self) -> str:
        """The source link's words, or the plain facts when no link can be built."""
        new, old = self.why.new or Provenance(), self.why.old or Provenance()
        if not new.source:
            return ""
        revs = f"{old.revision[:12]}…{new.revision[:12]}" if old.revision and new.revision else new.revision[:12]
        return f"{normalize_source(new.source) or new.source} {revs}".strip()


def explain(image: str, old: str, new: str, why: Why) -> Explained:
    o, n = why.old or Provenance(), why.new or Provenance()
    return Explained(image, old, new, why, compare_url(n.source, o.revision, n.revision) if n.source and n.revision else "")


def section(e: Explained) -> str:
    """One change as a markdown block: heading and a list, every line complete."""
    w = e.why
    env = f" ({md(w.environment)})" if w.environment else ""
    lines = [f"#### `{e.image}` {md(e.old)} → {md(e.new)}{env}", ""]
    if w.old_digest or w.new_digest:
        lines.append(f"- **digest**: `{_short(w.old_digest) or '—'}` → `{w.new_digest or '—'}`")
    if w.policy:
        lines.append(f"- **policy**: {md(w.policy)}{(' — ' + md(w.reason)) if w.reason else ''}")
    elif w.reason:
        lines.append(f"- **why**: {md(w.reason)}")
    if w.passed_over:
        shown = "; ".join(f"{md(p.tag)}: {md(p.reason)}" for p in w.passed_over[:MAX_PASSED])
        more = len(w.passed_over) - MAX_PASSED
        lines.append(f"- **newer tags passed over**: {shown}{f' (and {more} more)' if more > 0 else ''}")
    if w.signature:
        lines.append(f"- **signature**: {md(w.signature)}")
    n = w.new
    if n is not None and n.unavailable:
        lines.append(f"- annotations unavailable: {md(n.unavailable)}")
    elif n is not None:
        if e.compare_url:
            lines.append(f"- **source**: [{md(e.source_text)}]({e.compare_url})")
        elif n.source:
            lines.append(f"- **source**: {md(e.source_text)}")
        if n.created:
            lines.append(f"- **created**: {md(n.created)}")
        if n.version:
            lines.append(f"- **version**: {md(n.version)}")
        if n.platforms:
            lines.append(f"- **platforms**: {md(', '.join(n.platforms))}")
    return "\n".join(lines) + "\n"


def trailers(items: tuple[Explained, ...]) -> str:
    """The same facts as Git trailers (``Key: value``, one line each; repeated keys per image, in order)."""
    out: list[str] = []
    for e in items:
        w = e.why
        out.append(f"Image: {e.image}")
        if w.environment:
            out.append(f"Image-Environment: {_one_line(w.environment)}")
        out.append(f"Image-From: {_one_line(e.old)}{('@' + w.old_digest) if w.old_digest else ''}")
        out.append(f"Image-To: {_one_line(e.new)}{('@' + w.new_digest) if w.new_digest else ''}")
        if w.policy:
            out.append(f"Image-Policy: {_one_line(w.policy)}{(': ' + _one_line(w.reason)) if w.reason else ''}")
        elif w.reason:
            out.append(f"Image-Reason: {_one_line(w.reason)}")
        for p in w.passed_over[:MAX_PASSED]:
            out.append(f"Image-Passed-Over: {_one_line(p.tag)}: {_one_line(p.reason)}")
        if w.signature:
            out.append(f"Image-Signature: {_one_line(w.signature)}")
        n = w.new
        if n is not None and n.unavailable:
            out.append(f"Image-Annotations: unavailable: {_one_line(n.unavailable)}")
        elif n is not None:
            if e.compare_url or n.source:
                out.append(f"Image-Source: {e.compare_url or _one_line(n.source)}")
            if n.revision:
                out.append(f"Image-Revision: {_one_line(n.revision)}")
            if n.created:
                out.append(f"Image-Created: {_one_line(n.created)}")
            if n.platforms:
                out.append(f"Image-Platforms: {_one_line(', '.join(n.platforms))}")
    if out:
        out.append(f"Rollback: {ROLLBACK_TRAILER}")
    return "\n".join(out)


def omitted_note(count: int) -> str:
    plural = "" if count == 1 else "s"
    return f"_Details of {count} more change{plural} omitted: GitHub limits a body to {BODY_LIMIT:,} characters._\n"


def cut(body: str, limit: int = BODY_LIMIT) -> str:
    """A body over ``limit`` cut at the last paragraph break that leaves room for a note (the last resort when
    even a body without details is too long, e.g. a user template listing thousands of files)."""
    if len(body) <= limit:
        return body
    note = "\n\n_…cut: GitHub limits a body to " + f"{limit:,} characters._\n"
    room = limit - len(note)
    at = body.rfind("\n\n", 0, room)
    return body[: at if at > 0 else room] + note
