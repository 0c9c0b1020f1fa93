"""The scanner: concurrent listings, shared per repository, first-seen state, new tags, failures."""

from __future__ import annotations

from pathlib import Path

from imagebot import refs
from imagebot.registry import Registries, RegistrySettings
from imagebot.registry.limits import RetryPolicy
from imagebot.registry.scanner import Scanner
from imagebot.registry.state import ScanState
from tests.fixtures.pager import Pager


def test_scanner_records_first_seen_and_reports_new_tags(pager: Pager, tmp_path: Path) -> None:
    for i in range(20):
        pager.repos[f"ok/app{i}"] = [f"1.{j}.0" for j in range(30)]
    now = [1000.0]
    state = ScanState(tmp_path / "state.db")
    registries = Registries(RegistrySettings(host="", plain_http=True, retry=RetryPolicy(attempts=1)))
    scanner = Scanner(registries, state, workers=8, clock=lambda: now[0])
    images = [refs.parse(f"{pager.host}/ok/app{i}") for i in range(20)]
    first = scanner.scan(images + images)  # duplicates: one listing per repository
    assert len(first) == 20 and all(r.ok and len(r.new_tags) == 30 for r in first.values())
    assert sum(pager.hits.values()) == 20
    now[0] = 2000.0
    pager.repos["ok/app3"].append("1.30.0")
    second = scanner.scan(images)
    assert second[f"{pager.host}/ok/app3"].new_tags == ("1.30.0",)
    assert all(not r.new_tags for k, r in second.items() if not k.endswith("/app3"))
    assert state.first_seen(f"{pager.host}/ok/app3", "1.0.0") == 1000.0
    assert state.first_seen(f"{pager.host}/ok/app3", "1.30.0") == 2000.0
    # state survives a restart
    assert ScanState(tmp_path / "state.db").known_tags(f"{pager.host}/ok/app3")["1.30.0"] == 2000.0


def test_a_failing_repository_does_not_stop_the_others(pager: Pager, tmp_path: Path) -> None:
    pager.repos["ok/good"] = ["1"]
    state = ScanState(tmp_path / "s.db")
    scanner = Scanner(Registries(RegistrySettings(host="", plain_http=True, retry=RetryPolicy(attempts=1))), state)
    out = scanner.scan([refs.parse(f"{pager.host}/ok/good"), refs.parse(f"{pager.host}/ok/missing")])
    assert out[f"{pager.host}/ok/good"].ok
    bad = out[f"{pager.host}/ok/missing"]
    assert not bad.ok and "not found" in (bad.error or "")
    rec = state.last_scan(f"{pager.host}/ok/missing")
    assert rec is not None and not rec.ok
