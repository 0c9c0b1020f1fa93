"""An OCI distribution v2 client over ``requests``: tag listing and manifest digests.

- ``GET /v2/<name>/tags/list?n=N`` following ``Link: <…>; rel="next"`` only to the same
  origin, with loop detection and a page cap that ends in a clear error.
- Auth: anonymous first; on a 401, the ``WWW-Authenticate`` challenge decides — Bearer (token
  from the realm, cached until expiry) or Basic. Credentials never appear in a message.
- TLS verified against the system store or a per-registry CA file; plain HTTP only by opt-in.
- Timeouts; retries with exponential backoff and full jitter on connection errors and 5xx;
  429 honours ``Retry-After``; a per-registry cap on concurrent requests and on requests per
  second; ``ratelimit-remaining`` style headers recorded.
- No ``requests`` exception leaves this module: everything becomes a RegistryError subclass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from imagebot.errors import RegistryError
from imagebot.registry.auth import NO_CREDENTIALS, CredentialSource, TokenCache, parse_challenge
from imagebot.registry.errors import (
    RegistryAuthError,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryRateLimited,
    RegistryUnreachable,
    redact,
)
from imagebot.registry.limits import RateLimiter, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.ASCII)
_RATE_HEADERS = ("ratelimit-remaining", "x-ratelimit-remaining", "ratelimit-limit", "x-ratelimit-limit")


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
    timeout: float = 15.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    page_size: int = 1000
    max_pages: int = 1000

    @property
    def base_url(self) -> str:
        if self.host == "docker.io":
            return "https://registry-1.docker.io"
        return f"{'http' if self.plain_http else 'https'}://{self.host}"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _connection_cause(exc: Exception) -> str:
    text = str(exc).lower()
    for needle, cause in (
        ("refused", "connection refused"),
        ("name or service not known", "host not found"),
        ("nodename nor servname", "host not found"),
        ("timed out", "timed out"),
        ("reset by peer", "connection reset"),
        ("remotedisconnected", "connection closed by the server"),
    ):
        if needle in text:
            return cause
    return type(exc).__name__


def _error_detail(resp: requests.Response) -> str:
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
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rnd: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(4, settings.max_concurrency))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._verify: str | bool = str(settings.ca_file) if settings.ca_file else True
        self._slots = threading.BoundedSemaphore(max(1, settings.max_concurrency))
        self._limiter = RateLimiter(settings.requests_per_second, burst=max(1, settings.max_concurrency))
        self._tokens = TokenCache()
        self._auth: dict[str, str] = {}  # scope → Authorization header value
        self._auth_lock = threading.Lock()
        self._sleep = sleep
        self._rnd = rnd or random.Random()
        self.rate_limit: dict[str, str] = {}
        self.requests_made = 0

    # ---------------------------------------------------------------- transport
    def _where(self) -> str:
        return f"registry {self.settings.host}"

    def _raw(self, method: str, url: str, headers: dict[str, str], **kw: Any) -> requests.Response:
        self._limiter.acquire()
        with self._slots:
            self.requests_made += 1
            return self.session.request(
                method, url, headers=headers, timeout=self.settings.timeout, verify=self._verify, allow_redirects=True, **kw
            )

    def request(self, method: str, url: str, scope: str, headers: dict[str, str] | None = None) -> requests.Response:
        """Send with auth, retries and limits; returns any final response (callers map statuses)."""
        policy = self.settings.retry
        hdrs = dict(headers or {})
        authed_once = False
        attempt = 0
        while True:
            auth = self._auth.get(scope)
            if auth:
                hdrs["Authorization"] = auth
            try:
                resp = self._raw(method, url, hdrs)
            except requests.exceptions.SSLError as exc:
                raise RegistryUnreachable(
                    f"{self._where()}: TLS verification failed ({redact(str(exc.__context__ or exc), 160)}); "
                    "give the registry's CA with --ca-file, or opt in to plain HTTP with --insecure-registry"
                ) from exc
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if attempt + 1 >= policy.attempts:
                    raise RegistryUnreachable(
                        f"{self._where()}: unreachable after {policy.attempts} attempts ({_connection_cause(exc)})"
                    ) from exc
                self._sleep(policy.backoff(attempt, self._rnd))
                attempt += 1
                continue
            except requests.exceptions.RequestException as exc:
                raise RegistryError(f"{self._where()}: request failed: {redact(str(exc), 200)}") from exc
            self._record_rate_headers(resp)
            if resp.status_code == 401 and not authed_once:
                authed_once = True
                self._authenticate(resp, scope)
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                if attempt + 1 >= policy.attempts:
                    return resp
                wait = parse_retry_after(resp.headers.get("Retry-After")) if resp.status_code == 429 else None
                if wait is not None and wait > policy.max_retry_after:
                    return resp
                self._sleep(wait if wait is not None else policy.backoff(attempt, self._rnd))
                attempt += 1
                continue
            return resp

    def _record_rate_headers(self, resp: requests.Response) -> None:
        for h in _RATE_HEADERS:
            v = resp.headers.get(h)
            if v is not None:
                self.rate_limit[h] = v

    def _authenticate(self, resp: requests.Response, scope: str) -> None:
        header = resp.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        creds = self.settings.credentials.lookup(self.settings.host)
        if scheme == "basic":
            if creds is None:
                raise RegistryAuthError(
                    f"{self._where()}: authentication required (Basic); configure credentials (docker config.json or a reference)"
                )
            value = "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        elif scheme == "bearer":
            value = "Bearer " + self._token(params, scope, creds)
        else:
            raise RegistryAuthError(f"{self._where()}: unsupported authentication challenge {scheme or '(none)'!r}")
        with self._auth_lock:
            self._auth[scope] = value

    def _token(self, params: dict[str, str], scope: str, creds: Any) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(f"{self._where()}: Bearer challenge without a realm")
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
        try:
            self._limiter.acquire()
            tr = self.session.get(
                realm,
                params=query,
                auth=(creds.username, creds.password) if creds else None,
                timeout=self.settings.timeout,
                verify=self._verify,
            )
        except requests.exceptions.RequestException as exc:
            raise RegistryUnreachable(f"{self._where()}: token service unreachable: {redact(str(exc), 160)}") from exc
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
            expires = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise RegistryProtocolError(f"{self._where()}: token service sent no valid JSON") from None
        if not token or not isinstance(token, str):
            raise RegistryProtocolError(f"{self._where()}: token service sent no token")
        self._tokens.put(key, token, expires)
        return token

    def _fail(self, resp: requests.Response, what: str) -> RegistryError:
        detail = redact(_error_detail(resp), 240)
        code = resp.status_code
        if code in (401, 403):
            has = self.settings.credentials.lookup(self.settings.host) is not None
            hint = "credentials rejected" if has else "access denied to anonymous requests; configure credentials"
            return RegistryAuthError(f"{self._where()}: {what}: {hint} (HTTP {code}: {detail})")
        if code == 404:
            return RegistryNotFound(f"{self._where()}: {what}: not found (HTTP 404: {detail})")
        if code == 429:
            return RegistryRateLimited(
                f"{self._where()}: {what}: rate-limited after {self.settings.retry.attempts} attempts"
                + (f" (Retry-After {resp.headers.get('Retry-After')})" if resp.headers.get("Retry-After") else "")
            )
        return RegistryError(f"{self._where()}: {what}: HTTP {code} ({detail})")

    # ---------------------------------------------------------------- API
    def list_tags(self, path: str) -> list[str]:
        """All tags of repository ``path``, following pagination; order as the registry sent them."""
        scope = f"repository:{path}:pull"
        url = f"{self.settings.base_url}/v2/{path}/tags/list?n={self.settings.page_size}"
        origin = _origin(url)
        seen_urls: set[str] = set()
        tags: list[str] = []
        seen_tags: set[str] = set()
        pages = 0
        while url:
            if url in seen_urls:
                raise RegistryProtocolError(f"{self._where()}: tag list of {path}: pagination loops back to {redact(url, 120)}")
            seen_urls.add(url)
            pages += 1
            if pages > self.settings.max_pages:
                raise RegistryProtocolError(
                    f"{self._where()}: tag list of {path}: more than {self.settings.max_pages} pages; "
                    "raise max_pages if this is real"
                )
            resp = self.request("GET", url, scope, {"Accept": "application/json"})
            if resp.status_code != 200:
                raise self._fail(resp, f"tag list of {path}")
            try:
                doc = resp.json()
            except ValueError:
                raise RegistryProtocolError(f"{self._where()}: tag list of {path}: response is not JSON") from None
            page = doc.get("tags") if isinstance(doc, dict) else None
            if page is None and isinstance(doc, dict) and "tags" in doc:
                page = []
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise RegistryProtocolError(f"{self._where()}: tag list of {path}: no 'tags' array in the response")
            for t in page:
                if t not in seen_tags:
                    seen_tags.add(t)
                    tags.append(t)
            url = self._next_link(resp, url, origin, path)
        return tags

    def _next_link(self, resp: requests.Response, current: str, origin: tuple[str, str], path: str) -> str:
        link = resp.headers.get("Link")
        if not link:
            return ""
        m = _LINK_NEXT.search(link)
        if not m:
            return ""
        nxt = urljoin(current, m.group(1))
        if _origin(nxt) != origin:
            raise RegistryProtocolError(
                f"{self._where()}: tag list of {path}: refusing a pagination link to another origin ({_origin(nxt)[1]})"
            )
        return str(nxt)

    def manifest_digest(self, path: str, reference: str, platform: Platform | None = None) -> str:
        """The digest of ``path:reference``; with ``platform``, the matching manifest inside an index."""
        scope = f"repository:{path}:pull"
        url = f"{self.settings.base_url}/v2/{path}/manifests/{reference}"
        what = f"manifest {path}:{reference}"
        if platform is None:
            resp = self.request("HEAD", url, scope, {"Accept": MANIFEST_ACCEPT})
            if resp.status_code == 200 and resp.headers.get("Docker-Content-Digest"):
                return str(resp.headers["Docker-Content-Digest"])
            if resp.status_code not in (200, 405):
                raise self._fail(resp, what)
        resp = self.request("GET", url, scope, {"Accept": MANIFEST_ACCEPT})
        if resp.status_code != 200:
            raise self._fail(resp, what)
        body = resp.content
        digest = resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
        if platform is None:
            return digest
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryProtocolError(f"{self._where()}: {what}: manifest is not JSON") from None
        media = doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
        if media in (OCI_INDEX, DOCKER_LIST) or "manifests" in doc:
            for desc in doc.get("manifests", []):
                if platform.matches(desc.get("platform") or {}):
                    return str(desc["digest"])
            available = sorted(
                "/".join(
                    x
                    for x in (
                        d.get("platform", {}).get("os"),
                        d.get("platform", {}).get("architecture"),
                        d.get("platform", {}).get("variant"),
                    )
                    if x
                )
                for d in doc.get("manifests", [])
            )
            raise RegistryNotFound(
                f"{self._where()}: {what}: no manifest for platform {platform} (has {', '.join(available) or 'none'})"
            )
        # a single-platform image: check its config's platform
        cfg = doc.get("config", {}).get("digest")
        if cfg:
            cresp = self.request("GET", f"{self.settings.base_url}/v2/{path}/blobs/{cfg}", scope)
            if cresp.status_code == 200:
                try:
                    c = cresp.json()
                except ValueError:
                    c = {}
                if not platform.matches({"os": c.get("os"), "architecture": c.get("architecture"), "variant": c.get("variant")}):
                    raise RegistryNotFound(
                        f"{self._where()}: {what}: single-platform image is {c.get('os')}/{c.get('architecture')}, not {platform}"
                    )
        return digest
