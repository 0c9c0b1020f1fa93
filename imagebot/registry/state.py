"""Scanner state in SQLite (stdlib): tags seen per repository with first-seen times, last scans.

First-seen times make minimum-age and soak rules work on any registry, including those that
report no creation dates. One connection per thread; writes are short transactions.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imagebot.verify.cosign import Status, Verification

SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (
  repository TEXT NOT NULL,
  tag TEXT NOT NULL,
  first_seen REAL NOT NULL,
  PRIMARY KEY (repository, tag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scans (
  repository TEXT PRIMARY KEY,
  last_scan REAL NOT NULL,
  ok INTEGER NOT NULL,
  tag_count INTEGER NOT NULL,
  error TEXT
);
CREATE TABLE IF NOT EXISTS signatures (
  repository TEXT NOT NULL,
  digest TEXT NOT NULL,
  keyset TEXT NOT NULL,
  status TEXT NOT NULL,
  detail TEXT NOT NULL,
  checked REAL NOT NULL,
  marks TEXT NOT NULL,
  PRIMARY KEY (repository, digest, keyset)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class ScanRecord:
    repository: str
    last_scan: float
    ok: bool
    tag_count: int
    error: str | None


class ScanState:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._local = threading.local()
        with self._conn() as c:
            c.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def known_tags(self, repository: str) -> dict[str, float]:
        rows = self._conn().execute("SELECT tag, first_seen FROM tags WHERE repository = ?", (repository,))
        return dict(rows.fetchall())

    def record_tags(self, repository: str, tags: Iterable[str], now: float) -> list[str]:
        """Record a listing; returns the tags not seen before (in listing order)."""
        conn = self._conn()
        known = self.known_tags(repository)
        new = [t for t in dict.fromkeys(tags) if t not in known]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?, ?)", [(repository, t, now) for t in new])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return new

    def record_scan(self, repository: str, now: float, ok: bool, tag_count: int, error: str | None) -> None:
        self._conn().execute(
            "INSERT INTO scans VALUES (?, ?, ?, ?, ?) ON CONFLICT(repository) DO UPDATE SET "
            "last_scan=excluded.last_scan, ok=excluded.ok, tag_count=excluded.tag_count, error=excluded.error",
            (repository, now, int(ok), tag_count, error),
        )

    def last_scan(self, repository: str) -> ScanRecord | None:
        row = self._conn().execute("SELECT * FROM scans WHERE repository = ?", (repository,)).fetchone()
        return None if row is None else ScanRecord(row[0], row[1], bool(row[2]), row[3], row[4])

    def first_seen(self, repository: str, tag: str) -> float | None:
        row = self._conn().execute("SELECT first_seen FROM tags WHERE repository = ? AND tag = ?", (repository, tag)).fetchone()
        return None if row is None else float(row[0])

    # ---- signature verdicts per digest and key set (imagebot.registry.signatures decides when to trust them)
    def signature(self, repository: str, digest: str, keyset: str) -> tuple[Verification, float, str] | None:
        """The cached verdict, when it was reached, and the signature tags the listing had then."""
        row = (
            self._conn()
            .execute(
                "SELECT status, detail, checked, marks FROM signatures WHERE repository = ? AND digest = ? AND keyset = ?",
                (repository, digest, keyset),
            )
            .fetchone()
        )
        if row is None or row[0] not in Status._value2member_map_:
            return None  # a verdict this version does not know: check again
        return Verification(Status(row[0]), row[1]), float(row[2]), row[3]

    def record_signature(self, repository: str, digest: str, keyset: str, verdict: Verification, now: float, marks: str) -> None:
        self._conn().execute(
            "INSERT INTO signatures VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(repository, digest, keyset) DO UPDATE SET "
            "status=excluded.status, detail=excluded.detail, checked=excluded.checked, marks=excluded.marks",
            (repository, digest, keyset, str(verdict.status), verdict.detail, now, marks),
        )
