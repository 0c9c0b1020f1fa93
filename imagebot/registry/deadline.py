"""Overall deadlines for registry calls.

A socket timeout bounds each read, not a call: a registry that drips its headers or body one
byte a second never trips it. A call therefore runs under a :class:`Deadline`. Every connection
the call sends on is registered with it (the transport calls :func:`track`), and one reaper
thread shuts those sockets down when the deadline passes, so a blocked read returns at once
wherever it is (status line, headers, body). The caller then sees a connection error, checks
:meth:`Deadline.expired`, and reports the deadline. Connecting needs no reaper: the client gives
connect and TLS handshake (which CPython bounds as a whole) a timeout no longer than the time left.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_RECHECK = 0.05  # a connection still connecting when the deadline passed is shut down this soon after


class Deadline:
    """``seconds`` from now; collects the connections of one call while it is active."""

    __slots__ = ("_conns", "_done", "_lock", "at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._conns: list[Any] = []
        self._done = False
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def _add(self, conn: Any) -> None:
        with self._lock:
            if not self._done:
                self._conns.append(conn)
        if self.expired():
            self._shutdown()

    def _shutdown(self) -> bool:
        """Shut down the sockets of this call; False when one was still connecting (retry soon)."""
        complete = True
        with self._lock:
            if self._done:
                return True
            for conn in self._conns:
                sock = getattr(conn, "sock", None)
                if sock is None:
                    complete = False
                    continue
                # the plain socket's shutdown: SSLSocket.shutdown would also tear down TLS state
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
        return complete

    def _finish(self) -> None:
        with self._lock:
            self._done = True
            self._conns.clear()


class _Reaper:
    """One daemon thread for the whole process: a heap of active deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline, at: float | None = None) -> None:
        entry = (deadline.at if at is None else at, next(self._ids), deadline)
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="registry-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:  # wake the reaper only when its next wake-up moves earlier
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic()))
                _, _, deadline = heapq.heappop(self._heap)
            if not deadline._shutdown():
                self.add(deadline, time.monotonic() + _RECHECK)


_reaper = _Reaper()
_local = threading.local()


@contextmanager
def active(deadline: Deadline) -> Iterator[Deadline]:
    """Run a call under ``deadline`` in this thread (nesting keeps the outer one)."""
    outer = getattr(_local, "deadline", None)
    if outer is not None:
        yield outer
        return
    _local.deadline = deadline
    _reaper.add(deadline)
    try:
        yield deadline
    finally:
        _local.deadline = None
        deadline._finish()


def track(conn: Any) -> None:
    deadline: Deadline | None = getattr(_local, "deadline", None)
    if deadline is not None:
        deadline._add(conn)
