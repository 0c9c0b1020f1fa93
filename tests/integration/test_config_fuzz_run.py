"""`imagebot run --once` on a table of mutated configurations against real parts (the Debian
registry, a bare repo over smart HTTP): every run ends in a documented exit code, never an
unexpected exception, and whatever `config validate` refuses, `run` refuses the same way (exit 2)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagebot.cli import main
from imagebot.errors import ExitCode
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.git

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: app}}
spec:
  template:
    spec:
      containers:
        - name: app
          image: {host}/fz/app:1.0.0 # {{"$imagepolicy": "fz:app"}}
"""

E = ("images", 0, "environments", "dev")
MUTATIONS: list[tuple[str, tuple[Any, ...], Any]] = [
    ("as given", (), None),
    ("interval 1s", ("interval",), "1s"),
    ("interval 0", ("interval",), 0),
    ("interval -5", ("interval",), -5),
    ("interval nan", ("interval",), math.nan),
    ("debounce -1", ("debounce",), -1),
    ("debounce 0", ("debounce",), 0),
    ("exclude everything", ("images", 0, "exclude"), [".*"]),
    ("exclude [1]", ("images", 0, "exclude"), [1]),
    ("numerical policy", (*E, "policy"), {"numerical": "asc"}),
    ("alphabetical desc", (*E, "policy"), {"alphabetical": "desc"}),
    ("policy as a string", (*E, "policy"), "semver"),
    ("push-branch", (*E, "target"), {"git": "c", "mode": "push-branch", "pushBranch": "updates"}),
    ("path that does not exist", (*E, "target", "path"), "nope/"),
    ("setter nobody uses", (*E, "setter"), "x:y"),
    ("no setter: marker-free", (*E, "setter"), None),
    ("minAge 1h", (*E, "minAge"), "1h"),
    ("digest pinned", (*E, "digest"), True),
    ("hold", (*E, "hold"), True),
    ("repository not in the registry", ("images", 0, "repository"), "{host}/fz/missing"),
    ("repository as a list", ("images", 0, "repository"), ["x"]),
    ("git repo that does not exist", ("git", 0, "url"), "{git}/nope.git"),
    ("caFile missing", ("registries", 0, "caFile"), "/nonexistent/ca.crt"),
    ("stateFile in a missing directory", ("stateFile",), "/nonexistent/state.db"),
    ("maxConcurrency 1, 0.5 requests/s", ("registries", 0), {"host": "{host}", "plainHTTP": True, "maxConcurrency": 1}),
    ("registries as a mapping", ("registries",), {"host": "x"}),
]


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _fill(value: Any, **names: str) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, **names) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("label", "path", "value"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_run_once_ends_in_a_documented_exit_code_whatever_the_config(
    label: str,
    path: tuple[Any, ...],
    value: Any,
    registry_plain: RegistryServer,
    git_http: GitHttp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = registry_plain.host
    registry_plain.pusher().push("fz/app", ["1.0.0", "1.1.0"])
    bare = make_bare(git_http.root, f"fz{os.urandom(4).hex()}", {"deploy.yaml": DEPLOY.format(host=host)})
    monkeypatch.setenv("FZ_GIT_USER", GIT_USER)
    monkeypatch.setenv("FZ_GIT_TOKEN", GIT_PASSWORD)
    doc: dict[str, Any] = {
        "apiVersion": "imagebot.dev/v1",
        "kind": "Config",
        "interval": "1h",
        "stateFile": str(tmp_path / "state.db"),
        "cacheDir": str(tmp_path / "cache"),
        "registries": [{"host": host, "plainHTTP": True}],
        "git": [{"name": "c", "url": git_http.url(bare), "auth": {"usernameEnv": "FZ_GIT_USER", "tokenEnv": "FZ_GIT_TOKEN"}}],
        "images": [
            {
                "name": "app",
                "repository": f"{host}/fz/app",
                "environments": {"dev": {"policy": {"semver": "^1"}, "setter": "fz:app", "target": {"git": "c"}}},
            }
        ],
    }
    if path:
        _set(doc, path, _fill(value, host=host, git=git_http.url(bare).rsplit("/", 1)[0]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(doc))

    out, err = io.StringIO(), io.StringIO()
    valid = main(["config", "validate", str(cfg)], out=out, err=err)  # an unexpected exception fails the test
    assert valid in (ExitCode.OK, ExitCode.USAGE), err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    ran = main(["run", "--once", "--config", str(cfg)], out=out, err=err)
    assert ran in {int(c) for c in ExitCode}, err.getvalue()
    assert "Traceback" not in err.getvalue()
    if valid == ExitCode.USAGE:
        assert ran == ExitCode.USAGE, f"{label}: validate refused it, run must too\n{err.getvalue()}"
    if label == "as given":
        assert ran == ExitCode.OK and "pushed" in out.getvalue(), err.getvalue()
