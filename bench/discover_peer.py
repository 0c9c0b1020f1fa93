"""P18: discovery without per-image config — 200 images x 300 tags, cold process, end to end:
``imagebot update --discover minor`` (walk the tree, find every reference, one listing per repository,
pick, edit, commit, push) vs Renovate (npm ``renovate@39``, its own default discovery: the ``kubernetes``
manager over the same manifests, ``--platform=local --dry-run=lookup``: no edit, no commit) in the same run.

Renovate is installed by bench/renovate_peer.py's installer (never by the tests); when it cannot be
installed or run, the result says so instead of dropping the row.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.renovate_peer import _deps_with_updates, install_renovate
from bench.scan_registry import REPOS, TAGS, seed
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, git, make_bare
from tests.fixtures.pki import make_pki
from tests.fixtures.registry import start_registry

RUNS = 3
DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app{r:03d}
spec:
  template:
    spec:
      containers:
        - name: app
          image: {host}/bench/app{r:03d}:1.0.0
"""


def _files(host: str) -> dict[str, str]:
    """Two environments of 100 manifests each: the commit groups its moves by them."""
    return {f"{'prod' if r % 2 else 'staging'}/app{r:03d}.yaml": DEPLOY.format(r=r, host=host) for r in range(REPOS)}


RUN_CONFIG = """apiVersion: imagebot.dev/v1
kind: Config
stateFile: {state}
cacheDir: {cache}
registries:
  - {{host: "{host}", plainHTTP: true}}
git:
  - {{name: fleet, url: "{url}", auth: {{usernameEnv: IMAGEBOT_GIT_USERNAME, tokenEnv: IMAGEBOT_GIT_TOKEN}}}}
images: []
discover: {{git: fleet, policy: {{semver: minor}}}}
"""


def ours(host: str, work: Path, runtime: bool = False) -> float:
    """Median seconds of a cold `imagebot update --discover minor` (``runtime``: a cold `imagebot run --once` with a
    `discover:` entry, fresh state) that moves all 200 references in one commit."""
    http = GitHttp(work / "git")
    try:
        bare = make_bare(http.root, "fleet", _files(host))
        tip = git("-C", str(bare), "rev-parse", "main").strip()
        env = {**os.environ, "IMAGEBOT_GIT_USERNAME": GIT_USER, "IMAGEBOT_GIT_TOKEN": GIT_PASSWORD}
        times = []
        for i in range(RUNS):
            git("-C", str(bare), "update-ref", "refs/heads/main", tip)  # the same job every time
            argv = [sys.executable, "-m", "imagebot", "update", "--repo", http.url(bare), "--cache-dir", str(work / f"c{i}")]
            argv += ["--discover", "minor", "--insecure-registry", host]
            if runtime:
                cfg = work / f"imagebot{i}.yaml"
                cfg.write_text(RUN_CONFIG.format(state=work / f"s{i}.db", cache=work / f"c{i}", host=host, url=http.url(bare)))
                argv = [sys.executable, "-m", "imagebot", "run", "--once", "--config", str(cfg), "--log-level", "WARNING"]
            t0 = time.perf_counter()
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(f"imagebot {argv[3]} failed: {proc.stderr[-500:]}")
            moved = git("-C", str(bare), "show", "main:prod/app001.yaml")
            assert ":1.29.9\n" in moved, moved
            assert git("-C", str(bare), "rev-list", "--count", "main").strip() == "2"
        return statistics.median(times)
    finally:
        http.stop()


def theirs(binary: Path, host: str, work: Path) -> tuple[float, int, str]:
    repo = work / "cfgrepo"
    for rel, text in _files(host).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    (repo / "renovate.json").write_text(json.dumps({"extends": [], "kubernetes": {"fileMatch": ["\\.yaml$"]}}))
    git("init", "-q", "-b", "main", str(repo))
    git("-C", str(repo), "add", "-A")
    git("-C", str(repo), "commit", "-qm", "init")
    env = {
        **os.environ,
        "RENOVATE_PLATFORM": "local",
        "RENOVATE_DRY_RUN": "lookup",
        "LOG_LEVEL": "info",
        "RENOVATE_ONBOARDING": "false",
        "RENOVATE_REQUIRE_CONFIG": "optional",
        "RENOVATE_HOST_RULES": json.dumps([{"matchHost": host, "insecureRegistry": True}]),
        "RENOVATE_BASE_DIR": str(work / "renovate-base"),
        "RENOVATE_CACHE_DIR": str(work / "renovate-cache"),
        "RENOVATE_REPORT_TYPE": "file",
        "RENOVATE_REPORT_PATH": str(work / "report.json"),
    }
    t0 = time.perf_counter()
    proc = subprocess.run([str(binary)], cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    failure = "" if proc.returncode == 0 else f"failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}"
    return seconds, _deps_with_updates(work / "report.json"), failure


def _load() -> float:
    return os.getloadavg()[0]


def _version(binary: Path) -> str:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


def run(peer: bool = True) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        server = start_registry("plain", t / "reg", make_pki(t / "pki"))
        try:
            seed(server, t / "reg/data")
            load0 = _load()
            mine = ours(server.host, t / "ours")
            result: dict[str, object] = {"p18_discover_ours_s": mine}
            print(
                f"P18 discover + lookup + edit + commit, {REPOS} images x {TAGS} tags, cold: imagebot {mine:5.2f} s"
                f" (load {load0:.1f} -> {_load():.1f} on {os.cpu_count()} cores)"
            )
            result["p18_discover_run_once_s"] = run_once = ours(server.host, t / "ours-run", runtime=True)
            print(f"   the same as a `discover:` entry of `imagebot run --once` (cold, fresh state): {run_once:5.2f} s")
            binary = install_renovate() if peer else None
            if binary is None:
                result["p18_renovate"] = "not measured (Renovate not installed)"
                print("   Renovate: NOT MEASURED — could not be installed")
                return result
            (t / "peer").mkdir()
            version, load0 = _version(binary), _load()
            seconds, found, failure = theirs(binary, server.host, t / "peer")
            result.update({"p18_renovate_version": version, "p18_renovate_updates_seen": found})
            if failure or found < REPOS:
                result["p18_renovate"] = failure or f"Renovate ran ({seconds:.1f}s) but found updates for {found}/{REPOS}"
                print(f"   Renovate: {result['p18_renovate']}")
                return result
            result.update({"p18_renovate_s": seconds, "p18_ratio": seconds / mine})
            print(
                f"   Renovate {version} default discovery (kubernetes manager), lookup only, updates found for"
                f" {found}/{REPOS}: {seconds:5.1f} s (load {load0:.1f} -> {_load():.1f})"
                f" -> imagebot end to end is {seconds / mine:4.1f}x faster"
            )
            return result
        finally:
            server.stop()


if __name__ == "__main__":
    run(peer="--no-peer" not in sys.argv)
