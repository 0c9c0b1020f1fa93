"""What a cold `imagebot run --once` pays for, checked without timing: the configuration is built
from the C parser's events (no ruamel round-trip composer), the GitHub client is imported only
when a pull request is due, and a state record is one SQLite commit without an fsync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml.composer import Composer

from imagebot.config.load import load
from imagebot.runtime.state import RuntimeState

CONFIG = Path(__file__).resolve().parents[3] / "config"


def _modules_after(code: str) -> set[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_loading_the_config_uses_no_round_trip_composer(monkeypatch: pytest.MonkeyPatch) -> None:
    """ruamel's pure-Python composer cost ~1.1 s on a 1,200-line configuration."""

    def composed(*args: object, **kwargs: object) -> None:
        raise AssertionError("the configuration went through ruamel's composer")

    monkeypatch.setattr(Composer, "compose_node", composed)
    cfg = load([CONFIG / "imagebot.yaml"], environment=False)
    assert len(cfg.images) == 2


def test_the_run_path_imports_neither_pygithub_nor_kubernetes() -> None:
    loaded = _modules_after("import imagebot.cli, imagebot.runtime.commands, imagebot.runtime.runner")
    assert "github" not in loaded, "PyGithub is imported only when a pull request is opened"
    assert "kubernetes" not in loaded


def test_a_plain_run_imports_only_what_it_uses() -> None:
    """`imagebot run` with a native configuration: no HTTP library beyond http.client, no Flux translation,
    template engine or Secret formats, no cosign (each is imported where a configuration needs it)."""
    code = (
        "import imagebot.cli as c; c.build_parser('run')\n"
        "import imagebot.runtime.commands, imagebot.runtime.runner, imagebot.registry.provenance, imagebot.update.walk\n"
        f"from imagebot.config.load import load; from pathlib import Path; load([Path({str(CONFIG / 'imagebot.yaml')!r})], "
        "environment=False)"
    )
    loaded = _modules_after(code)
    heavy = {"requests", "urllib3", "jinja2", "imagebot.config.flux", "imagebot.gitops.gotemplate", "gitopskit.fluxsecrets",
             "imagebot.verify.cosign", "imagebot.fluxcmd", "imagebot.controller.cli"}  # fmt: skip
    assert heavy.isdisjoint(loaded), sorted(heavy & loaded)


def test_flux_documents_are_told_apart_without_the_translation() -> None:
    from imagebot.config.load import is_flux_document

    docs = [None, "x", [], {}, {"apiVersion": 1}, {"apiVersion": "v1", "kind": "Secret"}, {"apiVersion": "v1", "kind": "Pod"},
            {"apiVersion": "v1", "kind": "ServiceAccount"}, {"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "X"},
            {"apiVersion": "source.toolkit.fluxcd.io/v1"}, {"apiVersion": "imagebot.dev/v1", "kind": "Config"},
            {"apiVersion": "image.toolkit.fluxcd.io"}, {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization"},
            {"apiVersion": "v1", "kind": 3}]  # fmt: skip
    # what the translation's own check answered before it moved here
    want = [False, False, False, False, False, True, False, True, True, True, False, False, False, False]
    assert [is_flux_document(d) for d in docs] == want


def test_a_state_record_is_one_commit_without_fsync(tmp_path: Path) -> None:
    state = RuntimeState(tmp_path / "s.db")
    conn = state._conn()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: WAL commits are not fsynced
    before = conn.total_changes
    commits: list[str] = []
    conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    state.record("app", "prod", reason="pushed", pending=None, now=1.0, tag="1.0.0", commit="abc")
    assert len(commits) == 1 and conn.total_changes - before == 3
    assert state.current("app", "prod") is not None
