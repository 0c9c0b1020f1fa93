"""Scanner state in SQLite (stdlib): tags seen per repository with first-seen times, last scans.

First-seen times make minimum-age and soak rules work on any registry, including those that
report no creation dates. One connection per thread; writes are short transactions, serialised in
the process by :func:`write_lock` (SQLite's own busy handler sleeps for milliseconds between tries,
which sixteen scanning threads turned into most of a pass).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot.update.model import Provenance

if TYPE_CHECKING:
    from imagebot.verify.cosign import Verification

# One row per repository: its tags' first-seen times as one JSON object. A row per tag cost ~5 µs an
# insert — a third of a cold 200-image pass — where one blob write per repository costs ~50 µs.
SCHEMA = """
CREATE TABLE IF NOT EXISTS tagsets (
  repository TEXT PRIMARY KEY,
  first_seen TEXT NOT NULL
);
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
CREATE TABLE IF NOT EXISTS provenance (
  repository TEXT NOT NULL,
  digest TEXT NOT NULL,
  facts TEXT NOT NULL,
  PRIMARY KEY (repository, digest)
) WITHOUT ROWID;
"""

# State files written before tagsets held a row per tag; folded into tagsets once, in one transaction.
_MIGRATE = """
INSERT OR IGNORE INTO tagsets (repository, first_seen)
  SELECT repository, json_group_object(tag, first_seen) FROM tags GROUP BY repository;
DROP TABLE tags;
"""


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def write_lock(path: Path | str) -> threading.Lock:
    """The process's one lock for writing the SQLite file at ``path`` (shared by every store on it)."""
    key = str(Path(path).resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


@contextmanager
def write_transaction(conn: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """One atomic write: this process's writers queue on ``lock``; other processes on SQLite's busy timeout."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


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
        self._write = write_lock(path)
        conn = self._conn()
        conn.executescript(SCHEMA)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='tags'").fetchone():
            with write_transaction(conn, self._write):  # checked again inside: another process may have done it
                if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='tags'").fetchone():
                    for statement in filter(str.strip, _MIGRATE.split(";")):
                        conn.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def known_tags(self, repository: str) -> dict[str, float]:
        row = self._conn().execute("SELECT first_seen FROM tagsets WHERE repository = ?", (repository,)).fetchone()
        if row is None:
            return {}
        known = json.loads(row[0])
        return {str(t): float(v) for t, v in known.items()} if isinstance(known, dict) else {}

    def record_tags(self, repository: str, tags: Iterable[str], now: float) -> list[str]:
        """Record a listing; returns the tags not seen before (in listing order)."""
        return self.record_listing(repository, tags, now)[0]

    def record_listing(self, repository: str, tags: Iterable[str], now: float) -> tuple[list[str], dict[str, float]]:
        """Record a good scan — its new tags and the scan itself — in one transaction.

        Returns the tags not seen before (in listing order) and the first-seen time of every tag
        known for the repository, these included, so the caller needs no second read.
        """
        listed = list(dict.fromkeys(tags))
        conn = self._conn()
        with write_transaction(conn, self._write):
            known = self.known_tags(repository)
            new = [t for t in listed if t not in known]
            if new:
                known.update(dict.fromkeys(new, now))
                conn.execute(
                    "INSERT INTO tagsets VALUES (?, ?) ON CONFLICT(repository) DO UPDATE SET first_seen=excluded.first_seen",
                    (repository, json.dumps(known, separators=(",", ":"))),
                )
            self._scan(conn, repository, now, True, len(listed), None)
        return new, known

    def record_scan(self, repository: str, now: float, ok: bool, tag_count: int, error: str | None) -> None:
        conn = self._conn()
        with write_transaction(conn, self._write):
            self._scan(conn, repository, now, ok, tag_count, error)

    @staticmethod
    def _scan(conn: sqlite3.Connection, repository: str, now: float, ok: bool, tag_count: int, error: str | None) -> None:
        conn.execute(
            "INSERT INTO scans VALUES (?, ?, ?, ?, ?) ON CONFLICT(repository) DO UPDATE SET "
            "last_scan=excluded.last_scan, ok=excluded.ok, tag_count=excluded.tag_count, error=excluded.error",
            (repository, now, int(ok), tag_count, error),
        )

    def last_scan(self, repository: str) -> ScanRecord | None:
        row = self._conn().execute("SELECT * FROM scans WHERE repository = ?", (repository,)).fetchone()
        return None if row is None else ScanRecord(row[0], row[1], bool(row[2]), row[3], row[4])

    def first_seen(self, repository: str, tag: str) -> float | None:
        return self.known_tags(repository).get(tag)

    # ---- signature verdicts per digest and key set (imagebot.registry.signatures decides when to trust them)
    def signature(self, repository: str, digest: str, keyset: str) -> tuple[Verification, float, str] | None:
        """The cached verdict, when it was reached, and the signature tags the listing had then."""
        from imagebot.verify.cosign import Status, Verification  # only a policy that verifies signatures asks

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
        conn = self._conn()
        with write_transaction(conn, self._write):
            conn.execute(
                "INSERT INTO signatures VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(repository, digest, keyset) DO UPDATE SET "
                "status=excluded.status, detail=excluded.detail, checked=excluded.checked, marks=excluded.marks",
                (repository, digest, keyset, str(verdict.status), verdict.detail, now, marks),
            )

    # ---- OCI annotations per digest (imagebot.registry.provenance): content under a digest never changes
    def provenance(self, repository: str, digest: str) -> Provenance | None:
        row = self._conn().execute(
            "SELECT facts FROM provenance WHERE repository = ? AND digest = ?", (repository, digest)
        ).fetchone()
        if row is None:
            return None
        try:
            d = json.loads(row[0])
            return Provenance(d["source"], d["revision"], d["created"], d["version"], tuple(d["platforms"]))
        except (ValueError, KeyError, TypeError):
            return None  # a row this version cannot read: fetch again

    def record_provenance(self, repository: str, digest: str, p: Provenance) -> None:
        facts = json.dumps({"source": p.source, "revision": p.revision, "created": p.created, "version": p.version,
                            "platforms": list(p.platforms)})  # fmt: skip
        conn = self._conn()
        with write_transaction(conn, self._write):
            conn.execute(
                "INSERT INTO provenance VALUES (?, ?, ?) ON CONFLICT(repository, digest) DO UPDATE SET facts=excluded.facts",
                (repository, digest, facts),
            )
