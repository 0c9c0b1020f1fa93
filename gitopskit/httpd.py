"""The small HTTP server both services share (webhooks, probes, metrics), hardened for the open network.

- A real listen backlog (``Limits.backlog``): a burst of webhooks waits in the kernel, never reset.
- A connection holds no thread while it is silent: new and keep-alive connections wait in one
  selector thread, and reach the bounded worker pool (``Limits.workers``) only once bytes arrive.
  Ready connections beyond ``Limits.queue`` are answered 503.
- Deadlines: a connection silent for ``read_timeout`` is closed; a request (head and body) must be
  read within ``read_timeout`` of being picked up, or its connection is shut down (no drip-feeding
  a worker); the request head is capped at ``max_head_bytes`` (431).
- A handler that raises answers 500 and logs; the server keeps serving.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from gitopskit import webhookauth
from gitopskit.errors import ListenError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    read_timeout: float = 10.0  # seconds a connection may stay silent, and to send one whole request
    workers: int = 32  # requests handled at once
    queue: int = 1024  # connections with bytes waiting for a worker; beyond: 503
    backlog: int = 1024  # listen(2) backlog (the kernel caps it at net.core.somaxconn)
    max_connections: int = 4096  # open connections; beyond, new ones wait in the backlog
    max_head_bytes: int = 32 * 1024  # request line + headers

    def __post_init__(self) -> None:
        for name in ("read_timeout", "workers", "queue", "backlog", "max_connections", "max_head_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"httpd limit {name} must be positive, not {getattr(self, name)!r}")


class _HeadBudget:
    """The request file while the head is parsed: a head over budget is http.client.LineTooLong (→ 431)."""

    def __init__(self, raw: io.BufferedIOBase, budget: int) -> None:
        self.raw, self.left, self.budget = raw, budget, budget

    def readline(self, size: int = -1) -> bytes:
        want = self.left + 1 if size < 0 else min(size, self.left + 1)
        line = self.raw.readline(want)
        self.left -= len(line)
        if self.left < 0:
            raise http.client.LineTooLong(f"request head over {self.budget} bytes")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each keep-alive request stalls ~40 ms
    server: Server  # type: ignore[assignment]

    def log_message(self, format: str, *args: object) -> None:
        pass

    # ------------------------------------------------------------------ the server's side
    def handle(self) -> None:
        """Requests until the connection closes — or, between requests with nothing pipelined, hand the
        connection back to the selector, so an idle keep-alive connection holds no worker."""
        self.parked = False
        while True:
            self._responded = False
            self.server._arm(self.connection)  # the request must be read within read_timeout
            try:
                self.handle_one_request()
            except OSError:  # the peer went away, or its read deadline shut the connection
                self.close_connection = True
            except Exception:
                log.exception("%s %s failed", self.command, urlsplit(self.path or "").path)
                if not self._responded:
                    with contextlib.suppress(OSError):
                        self._refuse(500, b"internal error\n")
                self.close_connection = True
            finally:
                self.server._disarm(self.connection)
            if self.close_connection:
                return
            if not self._pipelined():
                self.parked = True
                return

    def _pipelined(self) -> bool:
        """Are bytes of a next request already here (buffered or on the socket)? Never blocks."""
        sock = self.connection
        timeout = sock.gettimeout()
        try:
            sock.settimeout(0)
            return bool(self.rfile.peek(1))  # type: ignore[attr-defined]
        except OSError:
            return False
        finally:
            sock.settimeout(timeout)

    def parse_request(self) -> bool:
        raw = self.rfile
        used = len(getattr(self, "raw_requestline", b""))
        self.rfile = _HeadBudget(raw, self.server.limits.max_head_bytes - used)  # type: ignore[assignment]
        try:
            return super().parse_request()
        finally:
            self.rfile = raw

    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        self.server._disarm(self.connection)  # reading is over: the answer goes out under the socket timeout
        super().send_response(code, message)

    # ------------------------------------------------------------------ for the services' handlers
    def send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self, limit: int = 1 << 20) -> bytes | None:
        """The request body, or None once a refusal has been sent (the connection is then closed: bytes
        left unread would be parsed as the next request)."""
        length = self.headers.get("Content-Length")
        if length is None and self.headers.get("Transfer-Encoding"):
            self._refuse(411, b"send a Content-Length\n")
            return None
        try:
            n = int(length or 0)
        except ValueError:
            n = -1
        if n < 0:
            self._refuse(400, b"bad Content-Length\n")
            return None
        if n > limit:
            self._refuse(413, f"body over {limit} bytes\n".encode())
            return None
        data = self.rfile.read(n)
        if len(data) < n:  # the peer closed, or the read deadline shut the connection
            self.close_connection = True
            return None
        return data

    def authorized_body(self, secret: str) -> bytes | None:
        """The body of a webhook from someone holding ``secret`` (signature or token), or None once the
        refusal (400/411/413, or 401) has been sent."""
        body = self.body()
        if body is None:
            return None
        if not webhookauth.authorized(secret, body, self.headers, urlsplit(self.path).query):
            self.send(401, b"missing or wrong signature or token\n")
            return None
        return body

    def detach(self) -> socket.socket:
        """Take this connection out of the server for a long-lived response (a server-sent event stream) served
        by another thread: once the handler returns, the worker neither parks nor closes it, and it no longer
        counts against ``Limits.max_connections`` (the new owner bounds its own streams and closes it)."""
        self.wfile.flush()
        self.detached = True
        self.close_connection = True
        self.server._disarm(self.connection)
        sock: socket.socket = self.connection
        return sock

    def _refuse(self, code: int, message: bytes) -> None:
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(message)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(message)


def _linger(sock: socket.socket, seconds: float = 1.0) -> None:
    """Half-close, then drain what the peer still sends for a moment: closing with unread bytes (a refused
    head or body) would reset the connection before the peer has read our answer."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    except OSError:
        pass


_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\nRetry-After: 1\r\n\r\nbusy\n"


class Server:
    """One selector thread (accept, idle connections, deadlines) and a fixed pool of workers."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limits: Limits) -> None:
        self.limits = limits
        self.handler = handler
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET  # "[::]:8080" listens on IPv6
        self.listener = socket.create_server(address, family=family, backlog=limits.backlog)
        self.listener.setblocking(False)
        self.server_address: tuple[str, int] = self.listener.getsockname()[:2]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listener, selectors.EVENT_READ)
        self._accepting = True
        self._idle: dict[socket.socket, float] = {}  # waiting in the selector → close at this time
        self._busy: dict[socket.socket, float] = {}  # a worker reads its request → shut down at this time
        self._open = 0
        self._lock = threading.Lock()
        self._ready: queue.Queue[socket.socket | None] = queue.Queue(maxsize=limits.queue)
        self._parked: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()  # from workers, for the selector
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._threads = [threading.Thread(target=self._select_loop, name="httpd-select", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"httpd-{i}", daemon=True) for i in range(limits.workers)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ deadlines for workers
    def _arm(self, sock: socket.socket) -> None:
        with self._lock:
            self._busy[sock] = time.monotonic() + self.limits.read_timeout

    def _disarm(self, sock: socket.socket) -> None:
        with self._lock:
            self._busy.pop(sock, None)

    # ------------------------------------------------------------------ selector thread
    def _select_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._select_once()
            except Exception:  # never let one bad connection end the server's only acceptor
                log.exception("httpd selector")
                time.sleep(0.1)
        for sock in list(self._idle):
            self._close(sock)

    def _select_once(self) -> None:
        for key, _ in self._sel.select(timeout=0.25):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is self.listener:
                self._accept()
            elif sock is self._wake_r:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            else:
                self._sel.unregister(sock)
                self._idle.pop(sock, None)
                self._dispatch(sock)
        while True:  # keep-alive connections handed back by workers
            try:
                sock = self._parked.get_nowait()
            except queue.Empty:
                break
            self._watch(sock)
        self._expire()
        if not self._accepting and self._open < self.limits.max_connections:
            self._sel.register(self.listener, selectors.EVENT_READ)
            self._accepting = True

    def _accept(self) -> None:
        while self._open < self.limits.max_connections:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: stop accepting for a moment
                log.warning("accept failed: %s", exc)
                break
            with self._lock:
                self._open += 1
            self._watch(sock)
        if self._accepting:  # full: further connections wait in the kernel's backlog
            self._sel.unregister(self.listener)
            self._accepting = False

    def _watch(self, sock: socket.socket) -> None:
        try:
            self._sel.register(sock, selectors.EVENT_READ)
        except (ValueError, OSError):
            self._close(sock)
            return
        self._idle[sock] = time.monotonic() + self.limits.read_timeout

    def _dispatch(self, sock: socket.socket) -> None:
        try:
            self._ready.put_nowait(sock)
        except queue.Full:
            with contextlib.suppress(OSError):
                sock.setblocking(False)
                sock.send(_BUSY)
            self._close(sock)

    def _expire(self) -> None:
        now = time.monotonic()
        for sock in [s for s, t in self._idle.items() if t <= now]:
            self._sel.unregister(sock)
            del self._idle[sock]
            self._close(sock)
        with self._lock:
            late = [s for s, t in self._busy.items() if t <= now]
            for sock in late:
                del self._busy[sock]
        for sock in late:  # the worker's read fails at once and it closes the connection
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _close(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.close()
        with self._lock:
            self._open -= 1

    # ------------------------------------------------------------------ workers
    def _work(self) -> None:
        while True:
            sock = self._ready.get()
            if sock is None:
                return
            parked = detached = False
            try:
                sock.settimeout(self.limits.read_timeout)
                handler = self.handler(sock, sock.getpeername(), self)  # type: ignore[arg-type]
                parked = bool(getattr(handler, "parked", False)) and not self._stop.is_set()
                detached = bool(getattr(handler, "detached", False))
            except Exception as exc:  # the peer vanished mid-request, or a handler class without our guard
                if not isinstance(exc, OSError):
                    log.exception("request failed")
            finally:
                self._disarm(sock)
                if detached:  # its new owner serves and closes it
                    with self._lock:
                        self._open -= 1
                elif parked:
                    self._parked.put(sock)
                    with contextlib.suppress(OSError):
                        self._wake_w.send(b"x")
                else:
                    _linger(sock)
                    self._close(sock)

    # ------------------------------------------------------------------ lifecycle
    def shutdown(self) -> None:
        """Stop accepting and serving; returns once the selector thread has closed its connections."""
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._threads[0].join(5)
        for _ in self._threads[1:]:
            with contextlib.suppress(queue.Full):
                self._ready.put_nowait(None)
        with contextlib.suppress(OSError):
            self.listener.close()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def server_close(self) -> None:
        self.shutdown()


def start(listen: str, handler: type[BaseHTTPRequestHandler], limits: Limits | None = None) -> Server:
    """Serve ``handler`` on HOST:PORT in daemon threads; stop with ``.shutdown()``. A place it cannot listen
    (port taken, address not ours, not HOST:PORT) is a ListenError with one clear line, never a traceback."""
    host, _, port = listen.rpartition(":")
    if not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(f"cannot listen on {listen!r}: give HOST:PORT")
    try:
        return Server((host.strip("[]") or "0.0.0.0", int(port)), handler, limits or Limits())
    except OSError as exc:  # the port is taken (another replica, a process not yet gone), or not ours to bind
        raise ListenError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
