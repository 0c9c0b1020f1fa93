"""Pagination and misbehaving registries, on a paginating registry server of ours."""

from __future__ import annotations

import pytest

from imagebot.errors import RegistryError
from imagebot.registry import RegistryClient, RegistrySettings
from imagebot.registry.errors import RegistryProtocolError, RegistryRateLimited, RegistryUnreachable
from imagebot.registry.limits import RetryPolicy
from tests.fixtures.pager import Pager

TAGS = [f"v{i}" for i in range(250)]


def client(pager: Pager, page_size: int = 100, attempts: int = 4, max_pages: int = 1000) -> tuple[RegistryClient, list[float]]:
    sleeps: list[float] = []
    c = RegistryClient(
        RegistrySettings(
            host=pager.host,
            plain_http=True,
            page_size=page_size,
            max_pages=max_pages,
            retry=RetryPolicy(attempts=attempts, base=0.01, cap=0.05),
        ),
        sleep=sleeps.append,
    )
    return c, sleeps


@pytest.mark.parametrize("kind", ["ok", "absolute"], ids=["relative_link", "absolute_same_origin_link"])
def test_follows_next_links_across_pages(pager: Pager, kind: str) -> None:
    pager.repos[f"{kind}/app"] = TAGS
    c, _ = client(pager)
    assert sorted(c.list_tags(f"{kind}/app")) == sorted(TAGS)
    assert pager.hits[f"{kind}/app"] == 3
    assert c.rate_limit["ratelimit-remaining"] == "997"


def test_ten_thousand_tags_in_pages(pager: Pager) -> None:
    pager.repos["ok/big"] = [f"build-{i:05d}" for i in range(10_000)]
    c, _ = client(pager, page_size=1000)
    got = c.list_tags("ok/big")
    assert len(got) == 10_000 and len(set(got)) == 10_000
    assert pager.hits["ok/big"] == 10


def test_cross_origin_link_is_refused(pager: Pager) -> None:
    pager.repos["cross/app"] = TAGS
    c, _ = client(pager)
    with pytest.raises(RegistryProtocolError, match="another origin"):
        c.list_tags("cross/app")


def test_pagination_loop_is_detected(pager: Pager) -> None:
    pager.repos["loop/app"] = TAGS
    c, _ = client(pager)
    with pytest.raises(RegistryProtocolError, match="loops back"):
        c.list_tags("loop/app")


def test_page_cap_ends_in_a_clear_error(pager: Pager) -> None:
    pager.repos["ok/many"] = TAGS
    c, _ = client(pager, page_size=10, max_pages=5)
    with pytest.raises(RegistryProtocolError, match="more than 5 pages"):
        c.list_tags("ok/many")


def test_429_honours_retry_after_then_succeeds(pager: Pager) -> None:
    pager.repos["throttle/app"] = ["1", "2"]
    c, sleeps = client(pager)
    assert sorted(c.list_tags("throttle/app")) == ["1", "2"]
    assert sleeps == [0.0, 0.0], "Retry-After: 0 is honoured instead of the backoff"


def test_429_until_retries_run_out_is_rate_limited_error(pager: Pager) -> None:
    pager.repos["throttle/app"] = ["1"]
    c, _ = client(pager, attempts=2)
    with pytest.raises(RegistryRateLimited, match="rate-limited after 2 attempts"):
        c.list_tags("throttle/app")


def test_500_is_retried_with_backoff(pager: Pager) -> None:
    pager.repos["flaky/app"] = ["1"]
    c, sleeps = client(pager)
    assert c.list_tags("flaky/app") == ["1"]
    assert len(sleeps) == 2 and all(0 <= s <= 0.05 for s in sleeps)


def test_persistent_503_gives_up_with_registry_error(pager: Pager) -> None:
    c, sleeps = client(pager, attempts=3)
    with pytest.raises(RegistryError, match="HTTP 503"):
        c.list_tags("down/app")
    assert len(sleeps) == 2


def test_malformed_json_is_a_protocol_error(pager: Pager) -> None:
    c, _ = client(pager)
    with pytest.raises(RegistryProtocolError, match="not JSON"):
        c.list_tags("broken/app")


def test_unreachable_registry_after_retries(pager: Pager) -> None:
    host = pager.host
    pager.stop()
    c = RegistryClient(
        RegistrySettings(host=host, plain_http=True, retry=RetryPolicy(attempts=2, base=0.001)), sleep=lambda s: None
    )
    with pytest.raises(RegistryUnreachable, match="connection refused"):
        c.list_tags("ok/app")
