"""Server-sent event streams on one thread of their own, never on the HTTP worker pool.

A page's ``/events`` request is answered by a worker (headers, first comment), which then hands the connection
over (``httpd.Handler.detach``) and is free again: 50 or 1,000 open pages hold no worker. One broadcaster thread
owns every stream: non-blocking sockets in a selector, a bounded buffer per stream (a reader that falls
``max_buffer`` bytes behind is dropped — its EventSource reconnects and the page reloads its data), a comment
every ``heartbeat`` seconds so proxies and the browser know the stream is alive, and at most ``max_streams``
streams (beyond: 503, the browser retries).
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-store\r\n"
    b"X-Content-Type-Options: nosniff\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\n"
)


def frame(event: str, data: Any) -> bytes:
    """One SSE message: ``event: NAME`` and the JSON data on one line (JSON never contains a raw newline)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass(eq=False)
class _Stream:
    sock: socket.socket
    topics: frozenset[str]
    buf: bytearray = field(default_factory=bytearray)
    last: float = field(default_factory=time.monotonic)


class Broadcaster:
    def __init__(self, max_streams: int = 2000, max_buffer: int = 1 << 20, heartbeat: float = 15.0) -> None:
        self.max_streams, self.max_buffer, self.heartbeat = max_streams, max_buffer, heartbeat
        self._streams: dict[socket.socket, _Stream] = {}
        self._lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._new: list[_Stream] = []
        self._stop = threading.Event()
        self.sent = 0  # messages queued to streams: for tests and metrics
        self._thread = threading.Thread(target=self._loop, name="sse", daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self._streams) + len(self._new)

    def add(self, sock: socket.socket, topics: Iterable[str], first: bytes = b"") -> bool:
        """Serve ``sock`` (headers not yet sent) as a stream of the messages published to ``topics``; False when
        full (the caller answers 503)."""
        with self._lock:
            if len(self._streams) + len(self._new) >= self.max_streams:
                return False
            s = _Stream(sock, frozenset(topics), bytearray(HEAD + b": open\n\n" + first))
            self._new.append(s)
        self._wake()
        return True

    def publish(self, topic: str, event: str, data: Any) -> int:
        """Queue one message to every stream subscribed to ``topic``; returns how many."""
        msg = frame(event, data)
        n = 0
        with self._lock:
            for s in (*self._streams.values(), *self._new):
                if topic in s.topics:
                    s.buf += msg
                    n += 1
            self.sent += n
        if n:
            self._wake()
        return n

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(5)

    # ------------------------------------------------------------------ the thread
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._once()
            except Exception:  # one broken stream must never end every other page's updates
                log.exception("event streams")
                time.sleep(0.1)
        with self._lock:
            streams = [*self._streams.values(), *self._new]
            self._streams, self._new = {}, []
        for s in streams:
            self._close(s, registered=False)

    def _once(self) -> None:
        with self._lock:
            new, self._new = self._new, []
            for s in new:
                s.sock.setblocking(False)
                self._streams[s.sock] = s
                self._sel.register(s.sock, selectors.EVENT_READ)
        now = time.monotonic()
        with self._lock:
            for s in self._streams.values():
                if not s.buf and now - s.last >= self.heartbeat:
                    s.buf += b": keep-alive\n\n"
            self._flush_all()
            for s in self._streams.values():
                want = selectors.EVENT_READ | (selectors.EVENT_WRITE if s.buf else 0)
                with contextlib.suppress(KeyError, ValueError):
                    if self._sel.get_key(s.sock).events != want:
                        self._sel.modify(s.sock, want)
        for key, mask in self._sel.select(timeout=min(self.heartbeat, 1.0)):
            sock = key.fileobj
            if sock is self._wake_r:
                with contextlib.suppress(OSError):
                    while self._wake_r.recv(4096):
                        pass
                continue
            assert isinstance(sock, socket.socket)
            with self._lock:
                found = self._streams.get(sock)
                if found is not None and mask & selectors.EVENT_READ and not self._readable(found):
                    self._drop(found)

    def _flush_all(self) -> None:
        for s in list(self._streams.values()):
            if s.buf:
                try:
                    n = s.sock.send(s.buf)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self._drop(s)
                    continue
                del s.buf[:n]
                if n:
                    s.last = time.monotonic()
            if len(s.buf) > self.max_buffer:  # what the socket would not take: this reader is that far behind
                log.info("dropping an event stream %d bytes behind (its page reconnects and reloads)", len(s.buf))
                self._drop(s)

    @staticmethod
    def _readable(s: _Stream) -> bool:
        """A browser sends nothing on an event stream: bytes are ignored, end of file means it went away."""
        try:
            return bool(s.sock.recv(4096))
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def _drop(self, s: _Stream) -> None:
        self._streams.pop(s.sock, None)
        self._close(s, registered=True)

    def _close(self, s: _Stream, registered: bool) -> None:
        if registered:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s.sock)
        with contextlib.suppress(OSError):
            s.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.sock.close()
