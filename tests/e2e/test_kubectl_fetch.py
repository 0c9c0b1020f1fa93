"""tests/tools/kubectl.sh: a fresh Debian 12 has no kubectl package, so the demo and the tests fetch Debian sid's
once into a cache, under a lock, and reuse it offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.helpers import path_without_kubectl
from tests.tools.kubectl import SCRIPT


def _run(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_without_kubectl_on_path_two_runs_at_once_fetch_sids_once_and_later_runs_need_no_network(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "PATH": path_without_kubectl(tmp_path / "bin"), "IMAGEBOT_KUBECTL_CACHE": str(cache)}
    env.pop("IMAGEBOT_KUBECTL", None)
    runs = [_run(env), _run(env)]
    outs = [p.communicate(timeout=900) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], [err for _, err in outs]
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1, paths
    kubectl = Path(paths.pop())
    assert kubectl.is_relative_to(cache.resolve()) and kubectl.name == "kubectl"
    version = subprocess.run([str(kubectl), "version", "--client"], capture_output=True, text=True, check=True).stdout
    assert "Client Version: v1." in version
    versions = [p.name for p in cache.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(versions) == 1 and not versions[0].endswith(".tmp"), versions  # one finished tree, nothing half-made

    offline = subprocess.run(
        [str(SCRIPT)], env={**env, "MIRROR": "http://127.0.0.1:9/debian"}, capture_output=True, text=True, timeout=60
    )
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.strip() == str(kubectl)


def test_an_explicit_kubectl_that_is_not_there_is_refused_with_exit_2() -> None:
    proc = subprocess.run(
        [str(SCRIPT)], env={**os.environ, "IMAGEBOT_KUBECTL": "/nonexistent/kubectl"}, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "IMAGEBOT_KUBECTL=/nonexistent/kubectl is not an executable file" in proc.stderr


def test_on_a_machine_without_kubectl_the_tests_run_the_fetched_one(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": path_without_kubectl(tmp_path / "bin")}
    env.pop("IMAGEBOT_KUBECTL", None)
    smoke = "tests/cluster/test_cluster_smoke.py::test_kubectl_works_against_it"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", smoke],
        cwd=SCRIPT.parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
