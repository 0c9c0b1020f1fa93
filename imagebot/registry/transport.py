"""HTTP/1.1 for the registry client on the standard library's ``http.client``: keep-alive connections pooled per
origin, TLS, the environment's proxies, a byte cap on every body — and a fraction of the CPU of ``requests``.

A scan sends one request per repository (a cold ``run --once`` of 200 images, ~600): ``requests`` spent ~0.8 ms
of CPU per request merging settings and building objects, ``urllib3`` alone ~0.4 ms, ``http.client`` ~0.2 ms;
and not importing either saves ~75 ms of a cold start. What they did that matters here is done below:

- Connections are reused while the server keeps them open; an idle one the server has closed (or that has
  unread bytes) is dropped before use, and a request whose reused connection fails before any answer is sent
  once more on a new one (GET and HEAD are idempotent) — never more, so a dead server is not hammered.
- TLS: the client's ``ssl.SSLContext`` (system store, a CA file, or TLS material held in memory), hostname
  checked, SNI sent.
- Proxies from ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (either case) unless ``NO_PROXY`` names the host
  (suffix, ``host:port``, IP or CIDR, ``*``): plain-HTTP requests in absolute form, HTTPS through ``CONNECT``;
  proxy credentials in the URL become ``Proxy-Authorization``.
- Every connection registers with the calling thread's deadline (:func:`imagebot.registry.deadline.track`),
  which shuts its socket down when the call's time is up; each connect and read also stalls at most ``stall``.
- Errors come out as :class:`TransportError` (TLS, connection, or a malformed answer), never as
  ``http.client``/``ssl`` exceptions.

Status line and header limits are ``http.client``'s (65,536 bytes a line, 100 headers). What ``http.client``
tolerates but would mis-frame is refused as malformed: a header line it cannot parse (it drops every header after
it), a Content-Length that is not one non-negative number, a Transfer-Encoding other than ``chunked``, a bad chunk
size. An answer with both Content-Length and chunked is read chunked and its connection not reused (RFC 9112 6.3).
A body the server compresses although we asked for none (``gzip``; ``deflate`` zlib-wrapped or raw) is decompressed,
the cap counting decoded bytes; a truncated stream or bytes after its end are malformed, and so is any other
encoding (``br``, ``zstd``…): its bytes are never taken for the body. Only a body read to its end leaves its
connection reusable (not an error body cut at its cap).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import select
import ssl
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from imagebot.registry import deadline as deadlines

_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Failure(StrEnum):
    TLS = "tls"
    CONNECTION = "connection"
    MALFORMED = "malformed"  # an answer that is not HTTP we can frame or decode: asking again will not mend it
    PROXY = "proxy"  # the environment names a proxy this client cannot use


class TransportError(Exception):
    """A request that got no complete answer; ``kind`` says whether TLS refused it."""

    def __init__(self, kind: Failure, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class BodyTooLarge(Exception):
    """A body over the caller's cap (strict reads only)."""


class _Malformed(Exception):
    pass


class Headers(Mapping[str, str]):
    """Response headers, case-insensitive; a repeated header's values joined by ", " (as requests did: every
    ``Link`` or ``WWW-Authenticate`` line is seen)."""

    __slots__ = ("_d",)

    def __init__(self, message: http.client.HTTPMessage) -> None:
        d: dict[str, str] = {}
        for k, v in message.items():
            key = k.lower()
            d[key] = f"{d[key]}, {v}" if key in d else v
        self._d = d

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._d.get(key.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str  # "" or a Proxy-Authorization value


class UnusableProxy(ValueError):
    """The environment names a proxy this client cannot use (the message never shows its credentials)."""


def _proxy_from(url: str, name: str) -> Proxy:
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
        port = parts.port
    except ValueError as exc:
        raise UnusableProxy(f"{name} is not a usable proxy URL ({exc})") from None
    if parts.scheme != "http" or not parts.hostname:
        # going direct instead would bypass the proxy the operator set: refused, as a misconfiguration
        raise UnusableProxy(
            f"{name} names a {parts.scheme or '?'}:// proxy{'' if parts.hostname else ' without a host'}; only http:// "
            "proxies are supported (HTTPS goes through them with CONNECT)"
        )
    auth = ""
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(parts.hostname, port or 80, auth)


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """``NO_PROXY``'s meaning as curl, requests and Go give it: ``*``, a domain suffix (``.example``, ``*.example``,
    ``example``), ``host:port``, an IP (``::1`` or ``[::1]``, with a port ``[::1]:5000``) or CIDR; a trailing dot
    ignored."""
    host = host.strip("[]").rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry.startswith("["):  # a bracketed IPv6 address, maybe with a port
            close = entry.find("]")
            rest = entry[close + 1 :] if close > 0 else ""
            entry = entry[1:close] if close > 0 else entry
            if rest.startswith(":") and rest[1:] != str(port):
                continue
        if entry.startswith("*."):
            entry = entry[1:]
        entry = entry.rstrip(".")
        if not entry:
            continue
        if entry == "*":
            return True
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
        name, _, want_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if want_port and want_port != str(port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def environment_proxy(scheme: str, host: str, port: int, environ: Mapping[str, str] = os.environ) -> Proxy | None:
    """The proxy the environment names for this origin, or None (none set, or NO_PROXY bypasses it)."""

    def env(name: str) -> tuple[str, str]:
        for n in (name.lower(), name.upper()):
            if environ.get(n):
                return n, environ[n]
        return name.upper(), ""

    name, url = env(f"{scheme}_proxy")
    if not url:
        name, url = env("all_proxy")
    if not url or _bypassed(host.lower(), port, env("no_proxy")[1]):
        return None
    return _proxy_from(url, name)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection the server closed (readable at EOF) or that holds bytes nobody asked for."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Transport:
    """Pooled keep-alive connections for one registry client (thread-safe)."""

    def __init__(self, tls: Callable[[], ssl.SSLContext], max_idle: int, environ: Mapping[str, str] = os.environ) -> None:
        self._tls = tls  # called at the first HTTPS connection: a plain-HTTP registry never loads a CA store
        self._context: ssl.SSLContext | None = None
        self._max_idle = max(1, max_idle)
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._proxies: dict[tuple[str, str, int], Proxy | None] = {}
        self._environ = environ

    # ------------------------------------------------------------ connections
    def _proxy(self, scheme: str, host: str, port: int) -> Proxy | None:
        key = (scheme, host, port)
        if key not in self._proxies:  # the environment is read once per origin, not per request
            try:
                self._proxies[key] = environment_proxy(scheme, host, port, self._environ)
            except UnusableProxy as exc:
                raise TransportError(Failure.PROXY, str(exc)) from None
        return self._proxies[key]

    def _context_for_tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = self._tls()
            return self._context

    def _new(self, scheme: str, host: str, port: int, proxy: Proxy | None, stall: float) -> http.client.HTTPConnection:
        if scheme == "https":
            context = self._context_for_tls()
            if proxy is None:
                return http.client.HTTPSConnection(host, port, timeout=stall, context=context)
            conn = http.client.HTTPSConnection(proxy.host, proxy.port, timeout=stall, context=context)
            conn.set_tunnel(host, port, {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None)
            return conn
        if proxy is None:
            return http.client.HTTPConnection(host, port, timeout=stall)
        return http.client.HTTPConnection(proxy.host, proxy.port, timeout=stall)

    def _take(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if not _dropped(conn):
                    return conn
                conn.close()
        return None

    def _give(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    # ------------------------------------------------------------ exchange
    def exchange(self, method: str, url: str, headers: Mapping[str, str], stall: float, cap: int, error_cap: int) -> Answer:
        """Send one request and read its whole answer: a 2xx body over ``cap`` raises :class:`BodyTooLarge`; of any
        other body (an error, a redirect) the first ``error_cap`` bytes are kept. Redirects are the caller's."""
        try:
            parts = urlsplit(url)
            scheme, host = parts.scheme, parts.hostname or ""
            port = parts.port or _DEFAULT_PORTS[scheme]
            if not host or not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
                raise ValueError("not an absolute ASCII http(s) URL without spaces or controls")
        except (ValueError, KeyError) as exc:
            raise TransportError(Failure.MALFORMED, f"unusable URL: {exc}") from None
        proxy = self._proxy(scheme, host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        hdrs = dict(headers)
        if proxy is not None and scheme == "http":
            target = url.split("#", 1)[0]  # absolute form, to the proxy
            if proxy.authorization:
                hdrs["Proxy-Authorization"] = proxy.authorization
        key = (scheme, f"{host}|{proxy}" if proxy else host, port)
        conn = self._take(key)
        if conn is not None:
            try:
                return self._on(conn, key, method, target, hdrs, stall, cap, error_cap)
            except _Stale:
                pass  # the server closed a kept-alive connection as we sent: once more, on a new one
        conn = self._new(scheme, host, port, proxy, stall)
        try:
            return self._on(conn, key, method, target, hdrs, stall, cap, error_cap)
        except _Stale as exc:
            raise TransportError(Failure.CONNECTION, str(exc.__cause__ or "connection closed by the server")) from None

    def _on(
        self,
        conn: http.client.HTTPConnection,
        key: tuple[str, str, int],
        method: str,
        target: str,
        headers: dict[str, str],
        stall: float,
        cap: int,
        error_cap: int,
    ) -> Answer:
        reused = conn.sock is not None
        deadlines.track(conn)
        keep = sent = False
        try:
            if reused:
                conn.sock.settimeout(stall)
            else:
                conn.timeout = stall
            try:
                conn.request(method, target, headers=headers)
                sent = True
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                if reused:
                    raise _Stale from exc
                raise
            except http.client.BadStatusLine as exc:
                if reused:  # leftovers of an earlier answer on this connection, not necessarily a broken server
                    raise _Stale from exc
                raise _Malformed(f"not an HTTP status line: {str(exc)[:60]!r}") from None
            smuggled = _framing(resp)
            ok = resp.status < 300
            if method == "HEAD":
                # no body follows a HEAD answer; bytes a server sends anyway are seen before reuse (_dropped) or as a
                # bad status line on it (retried once on a new connection) — and could only be that registry's own
                # answer, which it could send as one: reusing its connection trusts it with nothing new
                body, whole = resp.read(), True  # http.client reads nothing for a HEAD; this ends the answer
            else:
                body, whole = _read(resp, cap if ok else error_cap, strict=ok)
            keep = whole and not smuggled and resp.isclosed() and not resp.will_close
            return Answer(resp.status, resp.reason or "", Headers(resp.msg), body)
        except _Malformed as exc:
            raise TransportError(Failure.MALFORMED, str(exc)) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:  # the peer went away: a connection failure
            raise TransportError(Failure.TLS if not sent else Failure.CONNECTION, f"{type(exc).__name__}: {exc}") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:  # verification, a refused client certificate, no TLS
            raise TransportError(Failure.TLS, f"{type(exc).__name__}: {exc}") from exc
        except (http.client.IncompleteRead, OSError) as exc:  # cut short: the connection failed, not the protocol
            raise TransportError(Failure.CONNECTION, f"{type(exc).__name__}: {exc}") from exc
        except (http.client.HTTPException, ValueError) as exc:  # too many or too long headers, a bad chunk size
            raise TransportError(Failure.MALFORMED, f"{type(exc).__name__}: {str(exc)[:120]}") from exc
        finally:
            if keep:
                self._give(key, conn)
            else:
                conn.close()


class _Stale(Exception):
    pass


def _framing(resp: http.client.HTTPResponse) -> bool:
    """Refuse what ``http.client`` would frame wrongly; True when the answer is chunked and also has a length."""
    msg = resp.msg
    if msg.defects:  # e.g. a line without a colon: http.client drops every header after it (Content-Length too)
        raise _Malformed(f"malformed header section ({type(msg.defects[0]).__name__})")
    codings = [c.strip().lower() for v in msg.get_all("Transfer-Encoding") or () for c in v.split(",")]
    if codings and codings != ["chunked"]:
        raise _Malformed(f"unsupported Transfer-Encoding {', '.join(codings)[:60]!r}")
    lengths = {v.strip() for v in msg.get_all("Content-Length") or ()}  # "5, 5" too: http.client would ignore it
    if codings:
        return bool(lengths)
    if lengths and (len(lengths) > 1 or not all(v.isascii() and v.isdigit() for v in lengths)):
        raise _Malformed(f"invalid Content-Length {', '.join(sorted(lengths))[:60]!r}")
    return False


class _Decoder:
    """A Content-Encoding's decoder: gzip, or deflate zlib-wrapped or raw (told apart by the zlib header, as
    curl does); output bounded per call, so a bomb costs no more than the cap."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._z: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        self._pending = b""

    def feed(self, data: bytes, limit: int) -> bytes:
        if self._z is None:  # deflate: the first two bytes say whether a zlib header wraps the stream
            self._pending += data
            if len(self._pending) < 2:
                return b""
            b0, b1 = self._pending[0], self._pending[1]
            wrapped = b0 & 0x0F == 8 and ((b0 << 8) | b1) % 31 == 0
            self._z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            data, self._pending = self._pending, b""
        if self._z.eof:
            if data:
                raise _Malformed(f"bytes after the end of the {self.encoding} stream")
            return b""
        try:
            out = self._z.decompress(data, limit)  # never more than the cap, whatever the ratio
        except zlib.error as exc:
            raise _Malformed(f"undecodable {self.encoding} body: {exc}") from None
        if self._z.eof and self._z.unused_data:
            raise _Malformed(f"bytes after the end of the {self.encoding} stream")
        return out

    def end(self) -> None:
        if self._z is None or not self._z.eof:
            raise _Malformed(f"the {self.encoding} body ends before its stream does")


_ENCODINGS = {"": "", "identity": "", "gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def _read(resp: http.client.HTTPResponse, cap: int, strict: bool) -> tuple[bytes, bool]:
    """The body and whether it was read to its end. Strict (a 2xx): over ``cap`` raises :class:`BodyTooLarge`,
    a body we cannot decode is malformed. Else (an error body, only for a message): its first ``cap`` bytes, or
    none when undecodable — the connection is then not reused."""
    length = resp.getheader("Content-Length", "")
    if strict and length.isascii() and length.isdigit() and int(length) > cap:
        raise BodyTooLarge
    raw_encoding = (resp.getheader("Content-Encoding", "") or "").strip().lower()
    encoding = _ENCODINGS.get(raw_encoding)
    if encoding is None:
        if strict:
            raise _Malformed(f"a body in Content-Encoding {raw_encoding[:40]!r}, which we did not ask for")
        return b"", False
    decoder = _Decoder(encoding) if encoding else None
    buf = bytearray()
    try:
        while True:
            chunk = resp.read(_CHUNK)
            if not chunk:
                if resp.length:  # http.client ends a short Content-Length body quietly: it is a broken answer
                    raise http.client.IncompleteRead(bytes(buf), resp.length)
                break
            if decoder is not None:
                chunk = decoder.feed(chunk, cap + 1 - len(buf))
            buf += chunk
            if len(buf) > cap:
                if strict:
                    raise BodyTooLarge
                resp.close()  # an error body: its start is enough; the connection is not reused
                return bytes(buf[:cap]), False
        if decoder is not None:
            decoder.end()
    except _Malformed:
        if strict:
            raise
        return bytes(buf[:cap]), False
    return bytes(buf), True
