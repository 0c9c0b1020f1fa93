"""The `discover:` section: a level of patch|minor|major, include/exclude globs, the git entry it edits."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml

from imagebot.cli import main
from imagebot.config.load import load
from imagebot.config.model import DiscoverConfig, DiscoverLevel
from imagebot.gitops.writer import Mode
from tests.unit.config.test_validation import native


def _validate(tmp_path: Path, doc: dict[str, Any]) -> tuple[int, str]:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(doc))
    out, err = io.StringIO(), io.StringIO()
    return main(["config", "validate", str(f)], out=out, err=err), err.getvalue()


def test_discover_section_loads(tmp_path: Path) -> None:
    doc = native(tmp_path)
    doc["discover"] = {"path": "envs", "policy": {"semver": "minor"}, "include": ["ghcr.io/acme/*"], "exclude": ["*/debug"]}
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(doc))
    config = load([f], environment=False)
    assert config.discover == (DiscoverConfig("c", "envs", DiscoverLevel.MINOR, ("ghcr.io/acme/*",), ("*/debug",)),)


def test_bad_discover_policy_is_exit_2_naming_the_allowed_values(tmp_path: Path) -> None:
    doc = native(tmp_path)
    doc["discover"] = {"path": "envs", "policy": {"semver": "latest"}}
    code, err = _validate(tmp_path, doc)
    assert code == 2
    assert "discover.policy.semver" in err and "'latest' is not one of the allowed values: patch, minor, major" in err


def test_discover_needs_a_policy_and_a_known_git_entry(tmp_path: Path) -> None:
    doc = native(tmp_path)
    doc["discover"] = {"git": "nope", "bogus": 1}
    code, err = _validate(tmp_path, doc)
    assert code == 2
    assert "'nope' names no entry of git:" in err and "bogus" in err and "discover" in err and "policy" in err


def test_discover_takes_a_list_of_entries_with_their_delivery(tmp_path: Path) -> None:
    doc = native(tmp_path)
    doc["discover"] = [
        {"path": "envs", "policy": {"semver": "patch"}},
        {"path": "clusters/", "policy": {"semver": "major"}, "mode": "pull-request", "labels": ["deps"], "reviewers": ["ops"]},
    ]
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(doc))
    envs, clusters = load([f], environment=False).discover
    assert envs == DiscoverConfig("c", "envs", DiscoverLevel.PATCH)
    assert clusters.mode is Mode.PULL_REQUEST and clusters.labels == ("deps",) and clusters.reviewers == ("ops",)
    assert (envs.name, clusters.name) == ("c:envs", "c:clusters")


def test_overlapping_discover_paths_and_a_push_branch_without_its_branch_are_exit_2(tmp_path: Path) -> None:
    doc = native(tmp_path)
    doc["discover"] = [
        {"path": "envs", "policy": {"semver": "patch"}},
        {"path": "envs/prod", "policy": {"semver": "minor"}},
        {"path": "", "policy": {"semver": "minor"}},
        {"path": "envs2", "policy": {"semver": "minor"}, "mode": "push-branch"},
    ]
    code, err = _validate(tmp_path, doc)
    assert code == 2
    assert "discover[1].path: overlaps the discover entry for envs of git c" in err
    assert "discover[2].path: overlaps the discover entry for envs of git c" in err
    assert "discover[3].pushBranch: required with mode push-branch" in err


def test_config_validate_counts_the_discover_entries(tmp_path: Path) -> None:
    doc = native(tmp_path)
    doc["discover"] = [{"path": "a", "policy": {"semver": "patch"}}, {"path": "b", "policy": {"semver": "minor"}}]
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    assert main(["config", "validate", "--no-environment", str(f)], out=out, err=io.StringIO()) == 0
    assert out.getvalue().rstrip().endswith(", 2 discover entries")


def test_a_discover_entry_runs_on_its_own_interval_else_the_configs(tmp_path: Path) -> None:
    from imagebot.runtime.runner import Runner

    doc = native(tmp_path)
    doc["interval"] = "1h"
    doc["stateFile"] = str(tmp_path / "state.db")
    doc["discover"] = [
        {"path": "a", "policy": {"semver": "patch"}, "interval": "1m"},
        {"path": "b", "policy": {"semver": "minor"}},
    ]
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(doc))
    cfg = load([f], environment=False)
    assert [e.interval_seconds for e in cfg.discover] == [60.0, None]
    runner = Runner(cfg)
    d = runner.discovery
    assert d is not None and [e.name for e in d.due(0.0, None)] == ["c:a", "c:b"]  # never run: both due
    d._last = {"c:a": 0.0, "c:b": 0.0}
    assert d.due(59.0, None) == [] and [e.name for e in d.due(60.0, None)] == ["c:a"]
    assert [e.name for e in d.due(3600.0, None)] == ["c:a", "c:b"]


def test_a_discover_interval_must_be_a_positive_duration(tmp_path: Path) -> None:
    doc = native(tmp_path)
    doc["discover"] = {"path": "a", "policy": {"semver": "patch"}, "interval": "0s"}
    code, err = _validate(tmp_path, doc)
    assert code == 2 and "discover.interval" in err
