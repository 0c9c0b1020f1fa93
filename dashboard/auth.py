"""Who may write: read-only for everyone, write access for holders of a token (a file or an environment
variable; in a cluster, a Secret mounted or passed as an environment variable).

A browser logs in once with the token (form → an HttpOnly, SameSite=Strict session cookie); a script sends
``Authorization: Bearer TOKEN``. Every form POST carries a CSRF token bound to a per-browser cookie
(HMAC of it with a key that lives only in this process), and a POST whose Origin is not this server's is
refused. Tokens are compared in constant time and never logged or rendered. Each client's wrong tokens (login form
and Bearer alike) are counted, and one that keeps guessing is locked out for longer each time (dashboard/throttle.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from dashboard.throttle import Throttle

SESSION_COOKIE = "dashboard_session"
CSRF_COOKIE = "dashboard_csrf"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000
# A token is a password guessed online (login form, Bearer): 12 random characters are beyond any guessing rate the
# server can serve; a shorter one is more likely a typo or a placeholder than a secret. README says the same number.
MIN_TOKEN_CHARS = 12


class TokenError(ValueError):
    """The token source is unusable (missing, empty, malformed); the message never holds a token."""


@dataclass(frozen=True, slots=True)
class Who:
    name: str
    via: str  # "session" | "bearer"


def parse_tokens(text: str, where: str) -> dict[str, str]:
    """Token → who. One token per line: ``TOKEN`` (who: ``token``), or ``NAME TOKEN`` to name its holder in
    the activity timeline; blank lines and ``#`` comments are skipped. A token (NAME not counted) shorter than
    MIN_TOKEN_CHARS is refused (guessable)."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) > 2:
            raise TokenError(f"{where}:{n}: give TOKEN or NAME TOKEN, not {len(parts)} fields")
        name, token = (parts[0], parts[1]) if len(parts) == 2 else ("token", parts[0])
        if len(token) < MIN_TOKEN_CHARS:
            what = "the token (after the name)" if len(parts) == 2 else "the token"
            raise TokenError(f"{where}:{n}: {what} has {len(token)} characters; at least {MIN_TOKEN_CHARS} are needed")
        out[token] = name
    if not out:
        raise TokenError(f"{where}: no token in it")
    return out


class Auth:
    def __init__(self, tokens: dict[str, str], read_only: bool = False) -> None:
        self.tokens = {} if read_only else dict(tokens)
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.throttle = Throttle()

    @property
    def writable(self) -> bool:
        return bool(self.tokens)

    def check_token(self, given: str) -> str | None:
        """Its holder's name, or None; constant time per configured token."""
        found = None
        for token, name in self.tokens.items():
            if hmac.compare_digest(token.encode(), given.encode()):
                found = name
        return found

    def _checked(self, token: str, client: str) -> str | None:
        """check_token behind the client's throttle: raises Throttled (token unchecked) while it is locked out."""
        if not self.tokens:
            return None  # read-only: no token is right, so there is nothing to guess
        self.throttle.check(client)
        name = self.check_token(token)
        if name is None:
            self.throttle.failed(client)
        else:
            self.throttle.succeeded(client)
        return name

    def login(self, token: str, client: str) -> str | None:
        """A new session id for a right token, else None; raises Throttled while ``client`` is locked out."""
        who = self._checked(token, client)
        if who is None:
            return None
        sid = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                for k in [k for k, (_, exp) in self._sessions.items() if exp < now] or list(self._sessions)[:100]:
                    self._sessions.pop(k, None)
            self._sessions[sid] = (who, now + SESSION_SECONDS)
        return sid

    def logout(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def session(self, sid: str) -> str | None:
        if not sid or not self.tokens:
            return None
        with self._lock:
            got = self._sessions.get(sid)
        if got is None or got[1] < time.time():
            return None
        return got[0]

    def who(self, cookies: dict[str, str], authorization: str, client: str) -> Who | None:
        """The session's or Bearer token's holder, or None; a Bearer token is a guess like a login (Throttled)."""
        if authorization.lower().startswith("bearer "):
            name = self._checked(authorization[7:].strip(), client)
            return Who(name, "bearer") if name else None
        name = self.session(cookies.get(SESSION_COOKIE, ""))
        return Who(name, "session") if name else None

    # ------------------------------------------------------------------ CSRF (bound to the browser's cookie)
    def csrf_for(self, browser: str) -> str:
        return hmac.new(self._key, b"csrf:" + browser.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, browser: str, given: str) -> bool:
        # as bytes: compare_digest raises TypeError on a str with a non-ASCII character (a forged token can have one)
        return bool(browser) and hmac.compare_digest(self.csrf_for(browser).encode(), given.encode())


def new_browser_id() -> str:
    return secrets.token_urlsafe(24)
