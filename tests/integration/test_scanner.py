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


def test_a_state_file_with_a_row_per_tag_is_folded_into_tagsets_once(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:  # the schema state files had before tagsets
        columns = "repository TEXT NOT NULL, tag TEXT NOT NULL, first_seen REAL NOT NULL, PRIMARY KEY (repository, tag)"
        c.execute(f"CREATE TABLE tags ({columns}) WITHOUT ROWID")
        c.executemany("INSERT INTO tags VALUES (?, ?, ?)", [("r/a", "1.0.0", 10.0), ("r/a", "1.1.0", 20.0), ("r/b", "x", 5.0)])
    state = ScanState(db)
    assert state.known_tags("r/a") == {"1.0.0": 10.0, "1.1.0": 20.0}
    assert state.first_seen("r/b", "x") == 5.0
    new, known = state.record_listing("r/a", ["1.1.0", "1.2.0"], 30.0)
    assert new == ["1.2.0"] and known == {"1.0.0": 10.0, "1.1.0": 20.0, "1.2.0": 30.0}
    assert ScanState(db).known_tags("r/a") == known  # reopened: nothing folded twice
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT name FROM sqlite_master WHERE name = 'tags'").fetchone() is None


def test_a_repository_whose_client_cannot_be_built_fails_alone(pager: Pager, tmp_path: Path) -> None:
    """Not a registry's answer: the host's caFile is gone (an OSError where the client is made)."""
    pager.repos["ok/good"] = ["1"]
    default = RegistrySettings(host="", plain_http=True, retry=RetryPolicy(attempts=1))
    broken = RegistrySettings(host="localhost:1", ca_file=tmp_path / "gone.pem")
    scanner = Scanner(Registries(default, {"localhost:1": broken}))
    out = scanner.scan([refs.parse(f"{pager.host}/ok/good"), refs.parse("localhost:1/ok/bad")])
    assert out[f"{pager.host}/ok/good"].tags == ("1",)
    bad = out["localhost:1/ok/bad"]
    assert not bad.ok and bad.error is not None and "gone.pem" in bad.error and bad.error.startswith("registry localhost:1: ")
