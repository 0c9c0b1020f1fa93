"""The Images page's data: imagebot's own state file (read-only) and, when given, its config.

The state (SQLite, written by ``imagebot run/serve``) holds per image × environment the current tag, digest and
since when, what is pending and why, the last commit and pull request; and per repository the tags seen with
their first-seen time. The config says what the state does not: each environment's policy (so the newest
allowed tag and every excluded tag's reason are computed by imagebot's own policy code), promotion source and
soak (the countdown), and hold. The file is opened read-only (``mode=ro``): the dashboard never writes it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
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

    @property
    def key(self) -> str:
        return f"{self.image}/{self.environment}"


class StateUnreadable(Exception):
    """The state file cannot be read (missing, not SQLite, locked for too long)."""


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
            out.append(self._row(r, images.get(image), env, tags, found, now))
        return out

    def _row(
        self, r: Any, img: Any, env_name: str, tags: dict[str, list[TagSeen]], found: dict[Any, Any], now: float
    ) -> ImageEnv:
        image, env, tag, digest, since, pending, reason, commit, pr, updated = r
        repository, policy, newest, why = "", "", "", ""
        excluded: tuple[Excluded, ...] = ()
        hold, promote, soak, soak_ends = False, "", 0.0, 0.0
        seen: list[TagSeen] = []
        if img is not None:
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
