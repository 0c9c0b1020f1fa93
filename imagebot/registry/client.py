"""An OCI distribution v2 client: tag listing and manifest digests (HTTP: :mod:`imagebot.registry.transport`).

- ``GET /v2/<name>/tags/list?n=N`` following ``Link: <…>; rel="next"`` only to the same
  origin, with loop detection and a page cap that ends in a clear error.
- Validated where the data enters: a tag outside the OCI grammar is ignored and reported
  (:class:`TagListing`), a digest that is not ``sha256:<64 hex>`` / ``sha512:<128 hex>`` (or
  does not match the manifest's bytes) is a :class:`RegistryProtocolError`.
- Auth: anonymous first; on a 401 from the registry itself, the ``WWW-Authenticate`` challenge
  decides — Bearer (token from the realm, cached until expiry) or Basic. A TLS registry's token
  realm must be https too. Redirects are followed by hand: never from https to http, and the
  Authorization header we set never leaves the origin it was set for.
- Every secret the client holds (password, its Basic form, tokens) is scrubbed from every
  error message, on top of pattern-based redaction.
- TLS verified against the system store or a per-registry CA file; plain HTTP only by opt-in.
- Each public call (all pages of a listing; a digest with its token fetch and config blob) has
  one overall deadline (:mod:`imagebot.registry.deadline`) and a byte cap on what it reads.
- Retries with exponential backoff and full jitter on connection errors and 5xx, inside the
  deadline; 429 honours ``Retry-After``; a per-registry cap on concurrent requests and on
  requests per second; ``ratelimit-remaining`` style headers recorded.
- No transport exception leaves this module: everything becomes a RegistryError subclass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import re
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urlencode, urljoin, urlsplit

from imagebot import __version__, refs
from imagebot.errors import ClusterOnlyError, ConfigError, RegistryError
from imagebot.registry import deadline as deadlines
from imagebot.registry.auth import NO_CREDENTIALS, Credentials, CredentialSource, TokenCache, parse_challenge
from imagebot.registry.errors import (
    RegistryAuthError,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryRateLimited,
    RegistryUnreachable,
    redact,
)
from imagebot.registry.limits import RateLimiter, RetryPolicy, parse_retry_after
from imagebot.registry.transport import BodyTooLarge, Failure, Transport, TransportError

if TYPE_CHECKING:  # a type only: importing gitopskit.fluxsecrets costs a cold start ~25 ms
    from gitopskit.fluxsecrets import TLSMaterial

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
_REL_NEXT = re.compile(r'\s*;\s*rel="?next"?', re.ASCII)  # matched right after a Link's "<target>"
_RATE_HEADERS = ("ratelimit-remaining", "x-ratelimit-remaining", "ratelimit-limit", "x-ratelimit-limit")
# The digests a registry may name (OCI registered algorithms), lower-case hex, nothing else.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}", re.ASCII)
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5
_ERROR_BODY_CAP = 64 * 1024  # an error body only feeds a one-line message
_INVALID_KEPT = 50  # invalid tags remembered per listing (all are counted)
_MIN_SECRET = 4  # shorter secrets would garble messages without protecting anything
_USER_AGENT = f"imagebot/{__version__}"


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            from imagebot.errors import UsageError

            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64/v8")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, desc: dict[str, Any]) -> bool:
        return (
            desc.get("os") == self.os
            and desc.get("architecture") == self.architecture
            and (self.variant is None or desc.get("variant") == self.variant)
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How to talk to one registry host (``host[:port]``, as in a canonical image name)."""

    host: str
    ca_file: Path | None = None
    plain_http: bool = False  # explicit opt-in only
    credentials: CredentialSource = NO_CREDENTIALS
    requests_per_second: float | None = None
    max_concurrency: int = 8
    timeout: float = 15.0  # connect / single-read stall
    deadline: float = 30.0  # one whole call: every page, retry, redirect and token fetch
    max_body: int = 16 * 1024 * 1024  # bytes of one manifest, blob or token answer; of all pages of a listing
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    page_size: int = 1000
    max_pages: int = 1000
    tls: TLSMaterial | None = None  # CA and/or client certificate held in memory (a Flux certSecretRef)
    tls_unresolved: str = ""  # file mode: names the certSecretRef only the cluster holds, should TLS fail

    @property
    def base_url(self) -> str:
        if self.host == "docker.io":
            return "https://registry-1.docker.io"
        return f"{'http' if self.plain_http else 'https'}://{self.host}"


@dataclass(frozen=True, slots=True)
class TagListing:
    """The valid tags of a repository (registry order), and the invalid ones it also sent."""

    tags: tuple[str, ...]
    invalid_count: int = 0
    invalid: tuple[str, ...] = ()  # the first few, each cut to 200 characters

    def describe_invalid(self, limit: int = 5) -> str:
        shown = ", ".join(repr(t if len(t) <= 40 else t[:39] + "…") for t in self.invalid[:limit])
        more = f" and {self.invalid_count - limit} more" if self.invalid_count > limit else ""
        return f"{self.invalid_count} tag(s) outside the OCI tag grammar ignored: {shown}{more}"


@dataclass(frozen=True, slots=True)
class Reply:
    """A response read whole under the call's deadline and byte cap."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    reason: str
    url: str

    def json(self) -> Any:
        return parse_json(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def parse_json(content: bytes) -> Any:
    """``json.loads``; JSON nested deeper than the parser recurses (``[[[[…``) is a ValueError like any other bad
    JSON, not the RecursionError it raises."""
    try:
        return json.loads(content)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _link_next(link: str) -> str | None:
    """The target of a ``Link`` header's ``rel="next"``. Linear: the regex ``<([^>]*)>`` rescans the rest of the
    header from every "<" (quadratic: hours of CPU for 90 lines of 64 KiB, in one call no deadline interrupts)."""
    end = 0
    while (start := link.find("<", end)) != -1:
        end = link.find(">", start + 1)
        if end == -1:
            return None
        if _REL_NEXT.match(link, end + 1):
            return link[start + 1 : end]
    return None


def tls_context(tls: TLSMaterial) -> ssl.SSLContext:
    """An SSLContext from PEM text: the system's CAs plus ``tls.ca`` (as Flux, which extends the system pool),
    and the client certificate ``tls.cert`` + ``tls.key``. ``ssl`` loads a certificate chain only from files:
    they exist for that call only, created 0600 in a private (0700) directory removed before returning."""
    ctx = ssl.create_default_context()
    try:
        if tls.ca:
            ctx.load_verify_locations(cadata=tls.ca)
        if tls.cert:
            d = Path(tempfile.mkdtemp(prefix="imagebot-tls-"))
            try:
                for name, text in (("tls.crt", tls.cert), ("tls.key", tls.key)):
                    fd = os.open(d / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as fh:
                        fh.write(text)
                ctx.load_cert_chain(d / "tls.crt", d / "tls.key")
            finally:
                shutil.rmtree(d, ignore_errors=True)
    except (ssl.SSLError, ValueError) as exc:
        what = "the client certificate and key" if tls.cert else "the CA certificate"
        raise ConfigError(f"{what} of the registry's TLS settings do not load: {exc.__class__.__name__}") from None
    return ctx


def valid_digest(text: str) -> bool:
    return _DIGEST.fullmatch(text) is not None


def _shown(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _unusable(url: str) -> str:
    """Why ``url`` cannot be requested, or "": an absolute http(s) URL with a host and a valid port, ASCII without
    spaces or control characters (a registry's Location, Link or token realm is checked before use)."""
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        return "not ASCII without spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "not http or https"
    return "" if parts.hostname else "no host"


def _joined(base: str, ref: str) -> str:
    try:
        return urljoin(base, ref)
    except ValueError:  # e.g. an unclosed IPv6 bracket: shown as sent
        return ref


def _connection_cause(exc: Exception) -> str:
    text = str(exc).lower()
    for needle, cause in (
        ("refused", "connection refused"),
        ("name or service not known", "host not found"),
        ("nodename nor servname", "host not found"),
        ("timed out", "timed out"),
        ("reset by peer", "connection reset"),
        ("remotedisconnected", "connection closed by the server"),
        ("incompleteread", "the answer was cut short"),
    ):
        if needle in text:
            return cause
    return str(exc)[:80] or type(exc).__name__


def _error_detail(resp: Reply) -> str:
    try:
        doc = resp.json()
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if errors:
            return "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}" for e in errors if isinstance(e, dict))
    except ValueError:
        pass
    return resp.text[:200] if resp.text else resp.reason or ""


class RegistryClient:
    """One registry. Thread-safe: the scanner shares a client between its workers."""

    def __init__(
        self,
        settings: RegistrySettings,
        sleep: Callable[[float], None] = time.sleep,
        rnd: random.Random | None = None,
    ) -> None:
        self.settings = settings
        # TLS material held in memory is checked here (a bad key is a configuration error); a CA file is read at
        # the first request, where a missing one is this registry's failure, not the caller's.
        self._context = tls_context(settings.tls) if settings.tls is not None else None
        # The environment keeps requests' meaning: HTTPS_PROXY/HTTP_PROXY/NO_PROXY per origin (read once per
        # origin), REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE when no CA is configured, else the system's CA store;
        # ~/.netrc is never read (credentials come from the configuration only).
        self._ca_bundle = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")) or None
        self._transport: Transport | None = None
        self._slots = threading.BoundedSemaphore(max(1, settings.max_concurrency))
        self._limiter = RateLimiter(settings.requests_per_second, burst=max(1, settings.max_concurrency))
        self._tokens = TokenCache()
        self._auth: dict[str, str] = {}  # scope → Authorization header value
        self._auth_lock = threading.Lock()
        self._secrets: set[str] = set()  # every form of every secret this client has held
        self._sleep = sleep
        self._rnd = rnd or random.Random()
        self.rate_limit: dict[str, str] = {}
        self.requests_made = 0

    # ---------------------------------------------------------------- secrets
    def _remember(self, *secrets: str) -> None:
        with self._auth_lock:
            for s in secrets:
                if len(s) >= _MIN_SECRET:
                    self._secrets.update({s, quote(s), quote(s, safe=""), quote_plus(s), json.dumps(s)[1:-1]})

    def _credentials(self) -> Credentials | None:
        creds = self.settings.credentials.lookup(self.settings.host)
        if creds is not None:
            basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            self._remember(creds.password, basic)
        return creds

    def scrub(self, text: str, limit: int = 300) -> str:
        """``text`` without any secret this client holds (exactly), then pattern-redacted and cut."""
        with self._auth_lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
            text = text.replace(s, "***")
        return redact(text, limit)

    # ---------------------------------------------------------------- transport
    def _where(self) -> str:
        return f"registry {self.settings.host}"

    @contextmanager
    def _call(self, what: str) -> Iterator[deadlines.Deadline]:
        """One public call: one deadline for everything it sends; messages scrubbed of secrets."""
        dl = deadlines.Deadline(self.settings.deadline)
        try:
            with deadlines.active(dl) as active:
                yield active
        except RegistryError as exc:
            scrubbed = self.scrub(str(exc), 1000)
            if scrubbed == str(exc):
                raise
            raise type(exc)(scrubbed) from None

    def _http(self) -> Transport:
        transport = self._transport
        if transport is not None:
            return transport
        with self._auth_lock:
            if self._transport is None:
                self._transport = Transport(self._tls, max_idle=max(4, self.settings.max_concurrency))
            return self._transport

    def _tls(self) -> ssl.SSLContext:
        if self._context is not None:  # a certSecretRef's context carries its own CA
            return self._context
        ca = str(self.settings.ca_file) if self.settings.ca_file else self._ca_bundle
        try:
            return ssl.create_default_context(cafile=ca)  # with a file: only its CAs, as requests' verify=<path>
        except (OSError, ssl.SSLError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not PEM CA certificates"
            raise RegistryUnreachable(f"{self._where()}: the CA file {ca} cannot be used: {why}") from None

    def _late(self, dl: deadlines.Deadline, what: str) -> RegistryUnreachable:
        return RegistryUnreachable(
            f"{self._where()}: {what}: no complete answer within the {dl.seconds:g} s deadline "
            "(the registry is too slow or stalls)"
        )

    def _send(self, method: str, url: str, headers: dict[str, str], dl: deadlines.Deadline, what: str, cap: int) -> Reply:
        """One exchange, redirects followed by hand, the body read whole under ``cap`` bytes.

        Raises RegistryError for refused redirects, oversized bodies and the deadline; connection and TLS
        failures come out as :class:`TransportError`, for the retry loop.
        """
        hdrs = {"User-Agent": _USER_AGENT, **headers}
        transport = self._http()
        for _ in range(_MAX_REDIRECTS + 1):
            left = dl.remaining()
            if left <= 0:
                raise self._late(dl, what)
            stall = min(self.settings.timeout, left)
            self._limiter.acquire()
            with self._slots:
                self.requests_made += 1
                try:
                    # a body is read whole under the cap; an error or redirect's body only feeds a message
                    resp = transport.exchange(method, url, hdrs, stall, cap, _ERROR_BODY_CAP)
                except BodyTooLarge:
                    raise RegistryProtocolError(
                        f"{self._where()}: {what}: the answer is larger than {cap:,} bytes; refusing to read it"
                    ) from None
            if dl.expired():  # a body without a length, cut by the deadline's shutdown, ends like a whole one
                raise self._late(dl, what)
            location = resp.headers.get("Location")
            if resp.status in _REDIRECTS and location:
                nxt = _joined(url, location)
                if why := _unusable(nxt):
                    raise RegistryProtocolError(f"{self._where()}: {what}: refusing a redirect to {_shown(nxt)} ({why})")
                if urlsplit(url).scheme == "https" and urlsplit(nxt).scheme == "http":
                    raise RegistryProtocolError(
                        f"{self._where()}: {what}: refusing a redirect from https to plain http ({_origin(nxt)[1]})"
                    )
                if _origin(nxt) != _origin(url):
                    # the header we set is for its origin only (blob CDNs get none)
                    hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
                url = nxt
                continue
            return Reply(resp.status, resp.headers, resp.body, resp.reason, url)
        raise RegistryProtocolError(f"{self._where()}: {what}: more than {_MAX_REDIRECTS} redirects")

    def request(
        self,
        method: str,
        url: str,
        scope: str,
        headers: dict[str, str] | None = None,
        *,
        what: str = "request",
        cap: int | None = None,
    ) -> Reply:
        """Send with auth, retries and limits under the current call's deadline; returns any
        final response (callers map statuses)."""
        with self._call(what) as dl:
            return self._request(method, url, scope, headers or {}, dl, what, cap or self.settings.max_body)

    def _request(
        self, method: str, url: str, scope: str, headers: dict[str, str], dl: deadlines.Deadline, what: str, cap: int
    ) -> Reply:
        policy = self.settings.retry
        hdrs = dict(headers)
        authed_once = False
        attempt = 0
        while True:
            auth = self._auth.get(scope)
            if auth:
                hdrs["Authorization"] = auth
            try:
                resp = self._send(method, url, hdrs, dl, what, cap)
            except TransportError as exc:
                if dl.expired():
                    raise self._late(dl, what) from exc
                if exc.kind is Failure.PROXY:
                    raise RegistryUnreachable(f"{self._where()}: {exc}") from None
                if exc.kind is Failure.MALFORMED:  # the same request would get the same answer: not retried
                    raise RegistryProtocolError(
                        f"{self._where()}: {what}: malformed HTTP answer ({self.scrub(str(exc), 160)})"
                    ) from None
                if exc.kind is Failure.TLS:
                    if self.settings.tls_unresolved:
                        raise ClusterOnlyError(self.settings.tls_unresolved) from None
                    raise RegistryUnreachable(
                        f"{self._where()}: TLS verification failed ({self.scrub(str(exc), 160)}); "
                        "give the registry's CA with --ca-file, or opt in to plain HTTP with --insecure-registry"
                    ) from exc
                wait = policy.backoff(attempt, self._rnd)
                if attempt + 1 >= policy.attempts or wait >= dl.remaining():
                    raise RegistryUnreachable(
                        f"{self._where()}: unreachable after {attempt + 1} attempt(s) ({self.scrub(_connection_cause(exc), 120)})"
                    ) from exc
                self._sleep(wait)
                attempt += 1
                continue
            self._record_rate_headers(resp)
            if resp.status_code == 401 and not authed_once and _origin(resp.url) == _origin(url):
                # only the registry's own challenge is answered, never a redirect target's
                authed_once = True
                self._authenticate(resp, scope, dl)
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                if attempt + 1 >= policy.attempts:
                    return resp
                after = parse_retry_after(resp.headers.get("Retry-After")) if resp.status_code == 429 else None
                if after is not None and after > policy.max_retry_after:
                    return resp
                pause = after if after is not None else policy.backoff(attempt, self._rnd)
                if pause >= dl.remaining():
                    return resp
                self._sleep(pause)
                attempt += 1
                continue
            return resp

    def _record_rate_headers(self, resp: Reply) -> None:
        for h in _RATE_HEADERS:
            v = resp.headers.get(h)
            if v is not None:
                self.rate_limit[h] = v

    def _authenticate(self, resp: Reply, scope: str, dl: deadlines.Deadline) -> None:
        header = resp.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        creds = self._credentials()
        if scheme == "basic":
            if creds is None:
                raise RegistryAuthError(
                    f"{self._where()}: authentication required (Basic); configure credentials (docker config.json or a reference)"
                )
            value = "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        elif scheme == "bearer":
            value = "Bearer " + self._token(params, scope, creds, dl)
        else:
            raise RegistryAuthError(f"{self._where()}: unsupported authentication challenge {scheme or '(none)'!r}")
        with self._auth_lock:
            self._auth[scope] = value

    def _token(self, params: dict[str, str], scope: str, creds: Credentials | None, dl: deadlines.Deadline) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(f"{self._where()}: Bearer challenge without a realm")
        if _unusable(realm):
            raise RegistryAuthError(f"{self._where()}: Bearer challenge names an unusable token realm {_shown(realm)}")
        if urlsplit(realm).scheme == "http" and not self.settings.plain_http:
            # the registry speaks TLS: sending the password to a plain-http realm would leak it
            raise RegistryAuthError(
                f"{self._where()}: refusing the plain-http token realm {_origin(realm)[1]} of a TLS registry "
                "(credentials would travel in clear text)"
            )
        service = params.get("service", "")
        want_scope = params.get("scope") or scope
        user = creds.username if creds else ""
        key = (realm, service, want_scope, user)
        cached = self._tokens.get(key)
        if cached:
            return cached
        query: dict[str, str] = {"scope": want_scope}
        if service:
            query["service"] = service
        url = realm + ("&" if urlsplit(realm).query else "?") + urlencode(query)
        hdrs = {"Accept": "application/json"}
        if creds is not None:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        what = "token service"
        try:
            tr = self._send("GET", url, hdrs, dl, what, self.settings.max_body)
        except TransportError as exc:
            if dl.expired():
                raise self._late(dl, what) from exc
            if exc.kind is Failure.MALFORMED:
                raise RegistryProtocolError(
                    f"{self._where()}: {what}: malformed HTTP answer ({self.scrub(str(exc), 160)})"
                ) from None
            raise RegistryUnreachable(f"{self._where()}: token service unreachable: {self.scrub(str(exc), 160)}") from exc
        if tr.status_code in (401, 403):
            who = f"user {creds.username!r}" if creds else "anonymous access"
            raise RegistryAuthError(
                f"{self._where()}: token service refused {who} (HTTP {tr.status_code}); check the credentials"
            )
        if tr.status_code != 200:
            raise RegistryAuthError(f"{self._where()}: token service answered HTTP {tr.status_code}")
        try:
            doc = tr.json()
            token = doc.get("token") or doc.get("access_token")
            expires_in = doc.get("expires_in")
        except (ValueError, AttributeError, TypeError):
            raise RegistryProtocolError(f"{self._where()}: token service sent no valid JSON") from None
        if not token or not isinstance(token, str):
            raise RegistryProtocolError(f"{self._where()}: token service sent no token")
        self._remember(token)
        # a number of seconds, finite, at most a day; anything else: distribution's default 60 s
        ok = isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and 0 < expires_in < 86400
        self._tokens.put(key, token, float(expires_in) if ok else 60.0)
        return token

    def _fail(self, resp: Reply, what: str) -> RegistryError:
        detail = self.scrub(_error_detail(resp), 240)
        code = resp.status_code
        if code in (401, 403):
            has = self._credentials() is not None
            hint = "credentials rejected" if has else "access denied to anonymous requests; configure credentials"
            return RegistryAuthError(f"{self._where()}: {what}: {hint} (HTTP {code}: {detail})")
        if code == 404:
            return RegistryNotFound(f"{self._where()}: {what}: not found (HTTP 404: {detail})")
        if code == 429:
            after = resp.headers.get("Retry-After")
            return RegistryRateLimited(
                f"{self._where()}: {what}: rate-limited after {self.settings.retry.attempts} attempts"
                + (f" (Retry-After {self.scrub(after, 40)})" if after else "")
            )
        return RegistryError(f"{self._where()}: {what}: HTTP {code} ({detail})")

    # ---------------------------------------------------------------- API
    def list_tags(self, path: str) -> list[str]:
        """The valid tags of repository ``path`` (see :meth:`tag_listing`)."""
        return list(self.tag_listing(path).tags)

    def tag_listing(self, path: str) -> TagListing:
        """All tags of repository ``path``, following pagination; order as the registry sent them.

        A tag outside the OCI grammar is not returned but counted (and the first few kept):
        nothing downstream — policies, state, the YAML we write — sees it.
        """
        what = f"tag list of {path}"
        scope = f"repository:{path}:pull"
        url = f"{self.settings.base_url}/v2/{path}/tags/list?n={self.settings.page_size}"
        origin = _origin(url)
        seen_urls: set[str] = set()
        tags: list[str] = []
        seen_tags: set[str] = set()
        invalid: list[str] = []
        invalid_count = 0
        budget = self.settings.max_body
        pages = 0
        with self._call(what) as dl:
            while url:
                if url in seen_urls:
                    raise RegistryProtocolError(f"{self._where()}: {what}: pagination loops back to {redact(url, 120)}")
                seen_urls.add(url)
                pages += 1
                if pages > self.settings.max_pages:
                    raise RegistryProtocolError(
                        f"{self._where()}: {what}: more than {self.settings.max_pages} pages; raise max_pages if this is real"
                    )
                resp = self._request("GET", url, scope, {"Accept": "application/json"}, dl, what, max(0, budget))
                if resp.status_code != 200:
                    raise self._fail(resp, what)
                budget -= len(resp.content)
                try:
                    doc = resp.json()
                except ValueError:
                    raise RegistryProtocolError(f"{self._where()}: {what}: response is not JSON") from None
                page = doc.get("tags") if isinstance(doc, dict) else None
                if page is None and isinstance(doc, dict) and "tags" in doc:
                    page = []
                if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                    raise RegistryProtocolError(f"{self._where()}: {what}: no 'tags' array in the response")
                for t in page:
                    if t in seen_tags:
                        continue
                    seen_tags.add(t)
                    if refs.valid_tag(t):
                        tags.append(t)
                        continue
                    invalid_count += 1
                    if len(invalid) < _INVALID_KEPT:
                        invalid.append(t[:200])
                url = self._next_link(resp, url, origin, path)
        return TagListing(tuple(tags), invalid_count, tuple(invalid))

    def _next_link(self, resp: Reply, current: str, origin: tuple[str, str], path: str) -> str:
        link = resp.headers.get("Link")
        if not link:
            return ""
        target = _link_next(link)
        if target is None:
            return ""
        nxt = _joined(current, target)
        if why := _unusable(nxt):
            raise RegistryProtocolError(
                f"{self._where()}: tag list of {path}: refusing the pagination link {_shown(nxt)} ({why})"
            )
        if _origin(nxt) != origin:
            raise RegistryProtocolError(
                f"{self._where()}: tag list of {path}: refusing a pagination link to another origin ({_origin(nxt)[1]})"
            )
        return str(nxt)

    def _checked_digest(self, value: object, what: str, source: str) -> str:
        if not isinstance(value, str) or not valid_digest(value):
            raise RegistryProtocolError(
                f"{self._where()}: {what}: {source} is not a digest (want sha256:<64 lower-case hex>): {_shown(str(value), 100)}"
            )
        return value

    def manifest_digest(self, path: str, reference: str, platform: Platform | None = None) -> str:
        """The digest of ``path:reference``; with ``platform``, the matching manifest inside an index."""
        what = f"manifest {path}:{reference}"
        with self._call(what) as dl:
            return self._manifest_digest(path, reference, platform, what, dl)

    def _manifest_digest(self, path: str, reference: str, platform: Platform | None, what: str, dl: deadlines.Deadline) -> str:
        if not (refs.valid_tag(reference) or valid_digest(reference)):
            raise RegistryProtocolError(f"{self._where()}: {what}: not a tag or digest")
        scope = f"repository:{path}:pull"
        url = f"{self.settings.base_url}/v2/{path}/manifests/{reference}"
        cap = self.settings.max_body
        if platform is None:
            resp = self._request("HEAD", url, scope, {"Accept": MANIFEST_ACCEPT}, dl, what, cap)
            if resp.status_code == 200 and resp.headers.get("Docker-Content-Digest"):
                return self._checked_digest(resp.headers["Docker-Content-Digest"], what, "Docker-Content-Digest")
            if resp.status_code not in (200, 405):
                raise self._fail(resp, what)
        resp = self._request("GET", url, scope, {"Accept": MANIFEST_ACCEPT}, dl, what, cap)
        if resp.status_code != 200:
            raise self._fail(resp, what)
        body = resp.content
        header = resp.headers.get("Docker-Content-Digest")
        if header:
            digest = self._checked_digest(header, what, "Docker-Content-Digest")
            algo, _, hexpart = digest.partition(":")
            if _HASHES[algo](body).hexdigest() != hexpart:
                raise RegistryProtocolError(f"{self._where()}: {what}: Docker-Content-Digest does not match the manifest")
        else:
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if platform is None:
            return digest
        try:
            doc = parse_json(body)
        except ValueError:
            raise RegistryProtocolError(f"{self._where()}: {what}: manifest is not JSON") from None
        if not isinstance(doc, dict):
            raise RegistryProtocolError(f"{self._where()}: {what}: manifest is not a JSON object")
        media = doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
        if media in (OCI_INDEX, DOCKER_LIST) or "manifests" in doc:
            manifests = doc.get("manifests")
            if not isinstance(manifests, list) or not all(isinstance(d, dict) for d in manifests):
                raise RegistryProtocolError(f"{self._where()}: {what}: index without a 'manifests' list")
            for desc in manifests:
                plat = desc.get("platform")
                if platform.matches(plat if isinstance(plat, dict) else {}):
                    return self._checked_digest(desc.get("digest"), what, "the index entry")
            available = sorted(
                _shown("/".join(str(x) for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x), 40)
                for d in manifests
                if isinstance(p := d.get("platform"), dict)
            )
            raise RegistryNotFound(
                f"{self._where()}: {what}: no manifest for platform {platform} (has {', '.join(available) or 'none'})"
            )
        # a single-platform image: check its config's platform
        config = doc.get("config")
        cfg = config.get("digest") if isinstance(config, dict) else None
        if cfg:
            cfg = self._checked_digest(cfg, what, "the config descriptor")
            cresp = self._request("GET", f"{self.settings.base_url}/v2/{path}/blobs/{cfg}", scope, {}, dl, what, cap)
            if cresp.status_code == 200:
                try:
                    c = cresp.json()
                except ValueError:
                    c = {}
                if not isinstance(c, dict):
                    c = {}
                if not platform.matches({"os": c.get("os"), "architecture": c.get("architecture"), "variant": c.get("variant")}):
                    raise RegistryNotFound(
                        f"{self._where()}: {what}: single-platform image is "
                        f"{_shown(str(c.get('os')), 40)}/{_shown(str(c.get('architecture')), 40)}, not {platform}"
                    )
        return digest
