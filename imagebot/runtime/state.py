"""Runtime state (SQLite, the same file as the scanner's): current and pending selection per
image and environment, and the last commit / pull request — surviving restarts."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from imagebot.errors import ConfigError
from imagebot.registry.state import write_lock, write_transaction
from imagebot.runtime.decide import Approval, Current, Hold, Overrides

SCHEMA = """
CREATE TABLE IF NOT EXISTS selections (
  image TEXT NOT NULL, environment TEXT NOT NULL,
  tag TEXT, digest TEXT, since REAL NOT NULL DEFAULT 0,
  pending TEXT, reason TEXT, last_commit TEXT, last_pr TEXT, updated REAL NOT NULL DEFAULT 0,
  PRIMARY KEY (image, environment)
);
CREATE TABLE IF NOT EXISTS holds (
  image TEXT NOT NULL, environment TEXT NOT NULL, who TEXT NOT NULL, reason TEXT NOT NULL, since REAL NOT NULL,
  PRIMARY KEY (image, environment)
);
CREATE TABLE IF NOT EXISTS approvals (
  image TEXT NOT NULL, environment TEXT NOT NULL, tag TEXT NOT NULL, who TEXT NOT NULL, at REAL NOT NULL,
  PRIMARY KEY (image, environment)
);
CREATE TABLE IF NOT EXISTS operator_log (
  at REAL NOT NULL, image TEXT NOT NULL, environment TEXT NOT NULL, action TEXT NOT NULL, who TEXT NOT NULL,
  detail TEXT NOT NULL
);
"""

OPERATOR_LOG_KEPT = 1000  # operator actions kept for the dashboard's timeline (oldest dropped)
DISCOVERED = "discover:"  # the image column of a discovered reference's rows: discover:REPOSITORY (runtime/discovery.py)


def discovered_repository(image: str) -> str:
    """The repository (canonical name) a discovered reference's row is about, or "" for a configured image's row."""
    return image.removeprefix(DISCOVERED) if image.startswith(DISCOVERED) else ""


class OperatorAction(StrEnum):
    HOLD = "hold"
    RELEASE = "release"
    APPROVE = "approve"


@dataclass(frozen=True, slots=True)
class LoggedAction:
    at: float
    image: str
    environment: str
    action: str
    who: str
    detail: str


@dataclass(frozen=True, slots=True)
class Selection:
    image: str
    environment: str
    tag: str | None
    digest: str | None
    since: float
    pending: str | None
    reason: str
    last_commit: str | None
    last_pr: str | None


class RuntimeState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write = write_lock(path)
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "c", None)
        if c is None:
            c = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit is atomic and survives a crash of the process, and costs no fsync
            # (one per statement made `run --once` wait ~4 s on 400 records); a power loss can drop the last
            # records, which the next pass re-derives from Git and the registry.
            c.execute("PRAGMA synchronous=NORMAL")
            self._local.c = c
        return c

    def current(self, image: str, env: str) -> Current | None:
        row = (
            self._conn()
            .execute("SELECT tag, digest, since FROM selections WHERE image=? AND environment=?", (image, env))
            .fetchone()
        )
        return None if row is None or row[0] is None else Current(row[0], row[1], row[2])

    def record(
        self,
        image: str,
        env: str,
        *,
        reason: str,
        pending: str | None,
        now: float,
        tag: str | None = None,
        digest: str | None = None,
        commit: str | None = None,
        pr: str | None = None,
    ) -> None:
        args = (image, env, reason, pending, now, tag, digest, commit, pr)
        queue: list[tuple[Callable[..., None], tuple[object, ...]]] | None = getattr(self._local, "queue", None)
        if queue is not None:
            queue.append((self._record, args))
            return
        with self._transaction() as c:
            self._record(c, *args)

    @staticmethod
    def _record(
        c: sqlite3.Connection,
        image: str,
        env: str,
        reason: str,
        pending: str | None,
        now: float,
        tag: str | None,
        digest: str | None,
        commit: str | None,
        pr: str | None,
    ) -> None:
        c.execute("INSERT OR IGNORE INTO selections (image, environment, updated) VALUES (?, ?, ?)", (image, env, now))
        c.execute(
            "UPDATE selections SET reason=?, pending=?, updated=?, last_commit=COALESCE(?, last_commit), "
            "last_pr=COALESCE(?, last_pr) WHERE image=? AND environment=?",
            (reason, pending, now, commit, pr, image, env),
        )
        if tag is not None:  # only what the environment's branch holds: promotion and soak trust it
            c.execute(
                "UPDATE selections SET tag=?, digest=?, since=? WHERE image=? AND environment=?",
                (tag, digest, now, image, env),
            )
            # an approval is for one promotion: spent once the environment runs that tag
            c.execute("DELETE FROM approvals WHERE image=? AND environment=? AND tag=?", (image, env, tag))

    def note(self, image: str, env: str, *, reason: str, now: float) -> None:
        """Say why nothing happened (a failure): the current tag and what is pending stay as they are."""
        queue: list[tuple[Callable[..., None], tuple[object, ...]]] | None = getattr(self._local, "queue", None)
        if queue is not None:
            queue.append((self._note, (image, env, reason, now)))
            return
        with self._transaction() as c:
            self._note(c, image, env, reason, now)

    @staticmethod
    def _note(c: sqlite3.Connection, image: str, env: str, reason: str, now: float) -> None:
        c.execute("INSERT OR IGNORE INTO selections (image, environment, updated) VALUES (?, ?, ?)", (image, env, now))
        c.execute("UPDATE selections SET reason=?, updated=? WHERE image=? AND environment=?", (reason, now, image, env))

    def forget(self, rows: list[tuple[str, str]]) -> None:
        """Drop these (image, environment) rows: what they described is no longer in Git (discovery)."""
        if not rows:
            return
        queue: list[tuple[Callable[..., None], tuple[object, ...]]] | None = getattr(self._local, "queue", None)
        if queue is not None:
            queue.append((self._forget, (rows,)))
            return
        with self._transaction() as c:
            self._forget(c, rows)

    @staticmethod
    def _forget(c: sqlite3.Connection, rows: list[tuple[str, str]]) -> None:
        c.executemany("DELETE FROM selections WHERE image=? AND environment=?", rows)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """This thread's records and notes are queued, in order, and written in one transaction at
        each :meth:`flush` and at exit — a pass's 400 records are one write, not 400."""
        self._local.queue = []
        try:
            yield
        finally:
            try:
                self.flush()
            finally:
                self._local.queue = None

    def flush(self) -> None:
        """Write this thread's queued records (see :meth:`deferred`); a no-op outside it."""
        queue: list[tuple[Callable[..., None], tuple[object, ...]]] | None = getattr(self._local, "queue", None)
        if not queue:
            return
        items = list(queue)
        queue.clear()
        with self._transaction() as c:
            for write, args in items:
                write(c, *args)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One commit for a record's statements: atomic (never a row without its reason) and one WAL write, not three."""
        with write_transaction(self._conn(), self._write) as c:
            yield c

    def all(self) -> list[Selection]:
        rows = (
            self._conn()
            .execute(
                "SELECT image, environment, tag, digest, since, pending, reason, last_commit, last_pr "
                "FROM selections ORDER BY image, environment"
            )
            .fetchall()
        )
        return [Selection(*r) for r in rows]

    # -- operator overrides: written by `imagebot hold/release/approve` and the dashboard, read by each pass

    def overrides(self, image: str) -> dict[str, Overrides]:
        """Per environment of ``image``: its hold and approval, if any."""
        c = self._conn()
        holds = {r[0]: Hold(r[1], r[2], r[3]) for r in
                 c.execute("SELECT environment, who, reason, since FROM holds WHERE image=?", (image,))}  # fmt: skip
        approvals = {r[0]: Approval(r[1], r[2], r[3]) for r in
                     c.execute("SELECT environment, tag, who, at FROM approvals WHERE image=?", (image,))}  # fmt: skip
        return {e: Overrides(holds.get(e), approvals.get(e)) for e in holds.keys() | approvals.keys()}

    def all_overrides(self) -> dict[tuple[str, str], Overrides]:
        out: dict[tuple[str, str], Overrides] = {}
        for image in {r[0] for r in self._conn().execute("SELECT image FROM holds UNION SELECT image FROM approvals")}:
            out.update({(image, e): o for e, o in self.overrides(image).items()})
        return out

    def hold(self, image: str, env: str, *, who: str, reason: str, now: float) -> None:
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?, ?)", (image, env, who, reason, now))
            self._log(c, now, image, env, OperatorAction.HOLD, who, reason)

    def release(self, image: str, env: str, *, who: str, now: float) -> bool:
        """False when the environment was not held (nothing written)."""
        with self._transaction() as c:
            if c.execute("DELETE FROM holds WHERE image=? AND environment=?", (image, env)).rowcount == 0:
                return False
            self._log(c, now, image, env, OperatorAction.RELEASE, who, "")
        return True

    def approve(self, image: str, env: str, *, source: str, tag: str | None, who: str, now: float) -> str | None:
        """Approve ``tag`` (default: ``source``'s current tag) for ``env``; None when there is no tag to approve."""
        with self._transaction() as c:
            if tag is None:
                row = c.execute("SELECT tag FROM selections WHERE image=? AND environment=?", (image, source)).fetchone()
                tag = row[0] if row else None
                if tag is None:
                    return None
            c.execute("INSERT OR REPLACE INTO approvals VALUES (?, ?, ?, ?, ?)", (image, env, tag, who, now))
            self._log(c, now, image, env, OperatorAction.APPROVE, who, tag)
        return tag

    @staticmethod
    def _log(c: sqlite3.Connection, now: float, image: str, env: str, action: OperatorAction, who: str, detail: str) -> None:
        c.execute("INSERT INTO operator_log VALUES (?, ?, ?, ?, ?, ?)", (now, image, env, str(action), who, detail))
        c.execute("DELETE FROM operator_log WHERE rowid <= (SELECT MAX(rowid) FROM operator_log) - ?", (OPERATOR_LOG_KEPT,))

    def operator_log(self) -> list[LoggedAction]:
        rows = self._conn().execute("SELECT at, image, environment, action, who, detail FROM operator_log ORDER BY at DESC")
        return [LoggedAction(*r) for r in rows]


class InstanceLock:
    """One writer per state file: a second instance on the same state refuses to start."""

    def __init__(self, state: Path) -> None:
        self.path = Path(str(state) + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"another imagebot instance holds {self.path}: only one may write with this state") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
