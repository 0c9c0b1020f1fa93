"""Pure parts of the registry adapter: backoff, Retry-After, rate limiting, challenges, redaction."""

from __future__ import annotations

import random

import pytest

from imagebot.errors import ConfigError
from imagebot.registry.auth import Credentials, EnvCredentials, FileCredentials, TokenCache, parse_challenge
from imagebot.registry.errors import redact
from imagebot.registry.limits import RateLimiter, RetryPolicy, parse_retry_after


def test_backoff_is_full_jitter_capped() -> None:
    p = RetryPolicy(base=0.5, cap=4)
    rnd = random.Random(1)
    for attempt in range(8):
        for _ in range(50):
            assert 0 <= p.backoff(attempt, rnd) <= min(4, 0.5 * 2**attempt)


@pytest.mark.parametrize(
    ("value", "expected"), [("7", 7.0), ("0", 0.0), (None, None), ("soon", None), ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0)]
)
def test_retry_after_seconds_or_http_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=60.0) == expected


def test_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    lim = RateLimiter(10, burst=1, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        lim.acquire()
    assert now[0] == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
            "bearer",
            {"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/nginx:pull"},
        ),
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        ("Bearer realm=https://x/token,service=reg", "bearer", {"realm": "https://x/token", "service": "reg"}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    assert parse_challenge(header) == (scheme, params)


def test_token_cache_expires_early() -> None:
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put(("r", "s", "sc", "u"), "tok", 300)
    now[0] = 269
    assert cache.get(("r", "s", "sc", "u")) == "tok"
    now[0] = 271
    assert cache.get(("r", "s", "sc", "u")) is None


def test_redact_removes_tokens_passwords_and_userinfo() -> None:
    text = 'GET https://bot:s3cret@reg/v2 "token": "eyJabc.def" password=hunter2 Authorization: Bearer abc ' + "x" * 500
    out = redact(text)
    for secret in ("s3cret", "eyJabc", "hunter2"):
        assert secret not in out
    assert len(out) <= 300


def test_credentials_never_show_the_password() -> None:
    assert "pw" not in repr(Credentials("u", "pw"))


def test_env_and_file_credentials(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert EnvCredentials("X", {"X": "u:p:q"}).lookup("r") == Credentials("u", "p:q")
    with pytest.raises(ConfigError, match="not set"):
        EnvCredentials("X", {}).lookup("r")
    f = tmp_path / "c"
    f.write_text("nocolon")
    with pytest.raises(ConfigError, match="username:password"):
        FileCredentials(f).lookup("r")
