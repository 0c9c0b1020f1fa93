"""The Images page's data: imagebot's own state file (read-only) and, when given, its config.

The state (SQLite, written by ``imagebot run/serve``) holds per image × environment the current tag, digest and
since when, what is pending and why, the last commit and pull request; and per repository the tags seen with
their first-seen time. The config says what the state does not: each environment's policy (so the newest
allowed tag and every excluded tag's reason are computed by imagebot's own policy code), promotion source and
soak (the countdown), and hold. The pages open the file read-only (``mode=ro``); only the Hold / Release / Approve
actions write it, through imagebot's own state API (:meth:`ImageState.act`), as ``imagebot hold`` etc. do.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SHOWN = 50  # tags seen and tags not kept listed per environment (the rest counted): 500 environments stay one fast page


@dataclass(frozen=True, slots=True)
class TagSeen:
    tag: str
    first_seen: float


@dataclass(frozen=True, slots=True)
class Excluded:
    tag: str
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImageEnv:
    image: str
    environment: str
    repository: str
    tag: str
    digest: str
    since: float
    pending: str
    reason: str
    last_commit: str
    last_pr: str
    updated: float
    policy: str  # the policy described ("semver ^1"), or "promoted from X" ("" without the config)
    newest: str  # the newest tag the policy allows among the tags seen
    why: str  # the policy's own sentence for it
    excluded: tuple[Excluded, ...]  # tags the policy did not keep, and by what
    hold: bool
    promote_from: str
    soak_seconds: float
    soak_ends: float  # when the pending promotion may go (0 when none)
    tags: tuple[TagSeen, ...]  # newest first seen first (at most SHOWN)
    tags_total: int = 0
    excluded_total: int = 0
    held_by: str = ""  # an operator's hold (imagebot hold, this dashboard): who, since when, why
    held_since: float = 0.0
    held_reason: str = ""
    approved: str = ""  # an operator's early approval: the tag and who
    approved_by: str = ""

    @property
    def key(self) -> str:
        return f"{self.image}/{self.environment}"


class StateUnreadable(Exception):
    """The state file cannot be read (missing, not SQLite, locked for too long)."""


class ActionRefused(Exception):
    """An operator action that cannot be done (unknown image or environment, nothing to approve); the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class OperatorAction:
    at: float
    image: str
    environment: str
    action: str
    who: str
    detail: str


def _overrides(c: sqlite3.Connection) -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], Any]]:
    """Holds and approvals per (image, environment); none in a state file older than them."""
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    holds = {(r[0], r[1]): r[2:] for r in c.execute("SELECT image, environment, who, since, reason FROM holds")} if (
        "holds" in tables) else {}  # fmt: skip
    approvals = {(r[0], r[1]): r[2:] for r in c.execute("SELECT image, environment, tag, who FROM approvals")} if (
        "approvals" in tables) else {}  # fmt: skip
    return holds, approvals


def _tags_seen(c: sqlite3.Connection) -> dict[str, list[TagSeen]]:
    """Tags seen per repository with their first-seen time, in either layout the scanner has written: one JSON
    object per repository (``tagsets``) or a row per tag (``tags``, older files); none before its first scan."""
    out: dict[str, list[TagSeen]] = {}
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "tagsets" in tables:
        for repo, blob in c.execute("SELECT repository, first_seen FROM tagsets"):
            try:
                known = json.loads(blob)
            except ValueError:
                continue
            if isinstance(known, dict):
                seen = (TagSeen(str(t), float(v)) for t, v in known.items() if isinstance(v, (int, float)))
                out.setdefault(repo, []).extend(seen)
    if "tags" in tables:
        for repo, tag, seen in c.execute("SELECT repository, tag, first_seen FROM tags"):
            out.setdefault(repo, []).append(TagSeen(tag, seen))
    return out


class ImageState:
    """Reads the state file on each call (it is small and local); the config is loaded once."""

    def __init__(self, state: Path | None, config: Sequence[Path] = ()) -> None:
        self.config: Any = None
        if config:
            from imagebot.config.load import load

            self.config = load(list(config), environment=False)
            if state is None:
                state = self.config.state_file
        self.state = state

    def version(self) -> tuple[float, int]:
        """Changes when the state does (the file's or its write-ahead log's mtime and size)."""
        if self.state is None:
            return (0.0, 0)
        out = (0.0, 0)
        for p in (self.state, Path(str(self.state) + "-wal")):
            try:
                st = os.stat(p)
            except OSError:
                continue
            out = (max(out[0], st.st_mtime), out[1] + st.st_size)
        return out

    def _connect(self) -> sqlite3.Connection:
        assert self.state is not None
        if not self.state.is_file():
            raise StateUnreadable(f"{self.state}: no such file (has imagebot run yet?)")
        try:
            c = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=5)
            c.execute("PRAGMA query_only=1")
            return c
        except sqlite3.Error as exc:
            raise StateUnreadable(f"{self.state}: {exc}") from None

    def rows(self, now: float) -> list[ImageEnv]:
        if self.state is None:
            return []
        c = self._connect()
        try:
            sel = c.execute(
                "SELECT image, environment, tag, digest, since, pending, reason, last_commit, last_pr, updated "
                "FROM selections ORDER BY image, environment"
            ).fetchall()
            tags = _tags_seen(c)
            holds, approvals = _overrides(c)
        except sqlite3.Error as exc:
            raise StateUnreadable(f"{self.state}: {exc}") from None
        finally:
            c.close()
        for seen in tags.values():
            seen.sort(key=lambda t: (-t.first_seen, t.tag))
        found = {(r[0], r[1]): r for r in sel}
        out = []
        images = {i.name: i for i in self.config.images} if self.config is not None else {}
        keys = list(found)
        for img in images.values():  # environments configured but not yet recorded show too
            keys += [(img.name, e.name) for e in img.environments if (img.name, e.name) not in found]
        for image, env in sorted(keys):
            r = found.get((image, env)) or (image, env, None, None, 0.0, None, "not yet run", None, None, 0.0)
            row = self._row(r, images.get(image), env, tags, found, now)
            h, a = holds.get((image, env)), approvals.get((image, env))
            if h is not None:
                row = replace(row, held_by=h[0], held_since=h[1], held_reason=h[2])
            if a is not None:
                row = replace(row, approved=a[0], approved_by=a[1])
            out.append(row)
        return out

    def actions(self, limit: int = 200) -> list[OperatorAction]:
        """Operators' holds, releases and approvals, newest first (for the timeline); none without the file."""
        if self.state is None or not self.state.is_file():
            return []
        try:
            c = self._connect()
        except StateUnreadable:
            return []
        try:
            if not c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='operator_log'").fetchone():
                return []
            rows = c.execute(
                "SELECT at, image, environment, action, who, detail FROM operator_log ORDER BY at DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error:
            return []
        finally:
            c.close()
        return [OperatorAction(*r) for r in rows]

    def act(self, action: str, image: str, env: str, who: str, reason: str = "") -> str:
        """Hold, release or approve ``image`` in ``env`` as ``who``, through imagebot's state API (the CLI's writes);
        returns what was done. The pair must be one the page lists (configured or recorded)."""
        from imagebot.runtime.state import RuntimeState

        if self.state is None:
            raise ActionRefused(409, "no imagebot state given (dashboard serve --imagebot-state PATH or --imagebot-config FILE)")
        try:
            row = next((r for r in self.rows(time.time()) if (r.image, r.environment) == (image, env)), None)
        except StateUnreadable as exc:
            raise ActionRefused(503, str(exc)) from None
        if row is None:
            raise ActionRefused(404, f"no image {image} with environment {env} in imagebot's state or config")
        if action == "approve" and not row.promote_from:
            why = "" if self.config is not None else " (or the dashboard has no --imagebot-config to say so)"
            raise ActionRefused(400, f"{image} {env} does not promote from another environment{why}: nothing to approve")
        try:
            state = RuntimeState(self.state)
            now = time.time()
            if action == "hold":
                state.hold(image, env, who=who, reason=reason, now=now)
                return f"{image} {env} on hold by {who}"
            if action == "release":
                if not state.release(image, env, who=who, now=now):
                    return f"{image} {env} was not on hold"
                return f"{image} {env} released by {who}"
            tag = state.approve(image, env, source=row.promote_from, tag=None, who=who, now=now)
        except (OSError, sqlite3.Error) as exc:
            raise ActionRefused(503, f"imagebot's state file cannot be written: {exc}") from None
        if tag is None:
            raise ActionRefused(409, f"{image} {row.promote_from} has no current tag yet: nothing to approve")
        return f"{image} {env}: {tag} approved by {who}"

    def _row(
        self, r: Any, img: Any, env_name: str, tags: dict[str, list[TagSeen]], found: dict[Any, Any], now: float
    ) -> ImageEnv:
        image, env, tag, digest, since, pending, reason, commit, pr, updated = r
        repository, policy, newest, why = "", "", "", ""
        excluded: tuple[Excluded, ...] = ()
        hold, promote, soak, soak_ends = False, "", 0.0, 0.0
        seen: list[TagSeen] = []
        if img is None:  # a reference `discover:` found: its row names the repository
            from imagebot.runtime.state import discovered_repository

            repository = discovered_repository(image)
            seen = tags.get(repository, [])
        else:
            repository = img.repository.canonical_name
            seen = tags.get(repository, [])
            e = next((x for x in img.environments if x.name == env_name), None)
            if e is not None:
                hold, promote, soak = e.hold, e.promote_from or "", e.soak_seconds
                if e.policy is not None:
                    from imagebot.policy import build

                    pol = build(e.policy)
                    sel = pol.explain([t.tag for t in seen])
                    policy, newest, why = pol.describe(), sel.winner or "", sel.reason
                    excluded = tuple(Excluded(v.tag, str(v.outcome), v.reason) for v in sel.verdicts
                                     if str(v.outcome) not in ("selected", "kept"))  # fmt: skip
                elif promote:
                    policy = f"promoted from {promote} after {soak / 3600:g}h soak" if soak else f"promoted from {promote}"
                    src = found.get((image, promote))
                    if src is not None and src[2]:
                        newest, why = src[2], f"{promote} runs {src[2]}"
                        if pending and src[4] and soak:
                            soak_ends = src[4] + soak
        return ImageEnv(
            image, env, repository, tag or "", digest or "", since or 0.0, pending or "", reason or "", commit or "", pr or "",
            updated or 0.0, policy, newest, why, excluded[:SHOWN], hold, promote, soak, soak_ends, tuple(seen[:SHOWN]),
            len(seen), len(excluded),
        )  # fmt: skip
