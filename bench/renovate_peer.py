"""P1: find new tags for 200 repositories x 300 tags on the local registry — imagebot's scanner vs
Renovate (npm ``renovate@39``) looking up the same images from a config repo in dry-run (lookup).

Renovate is installed by this benchmark into ~/.cache/imagebot/peers/renovate (never by the
tests); when it cannot be installed or run, the result says so instead of dropping the row.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import run_once
from bench.scan_registry import REPOS, TAGS, seed
from imagebot import refs
from imagebot.registry import Registries, RegistrySettings
from imagebot.registry.scanner import Scanner
from tests.fixtures.git import git
from tests.fixtures.pki import make_pki
from tests.fixtures.registry import start_registry

PEER = Path.home() / ".cache" / "imagebot" / "peers" / "renovate"


def install_renovate() -> Path | None:
    binary = PEER / "node_modules" / ".bin" / "renovate"
    done = PEER / ".installed"  # npm links the binary before the install ends: an interrupted one has it too
    if binary.exists() and done.exists():
        return binary
    if shutil.which("npm") is None:
        return None
    shutil.rmtree(PEER, ignore_errors=True)  # whatever an interrupted install left
    PEER.mkdir(parents=True, exist_ok=True)
    try:  # re2 is compiled from source when its prebuilt binary cannot be fetched: ~12 min on 2 loaded cores
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "renovate@39"],
            cwd=PEER,
            capture_output=True,
            text=True,
            timeout=2400,
        )
    except subprocess.TimeoutExpired:
        return None  # no marker: the next run starts over
    if proc.returncode != 0 or not binary.exists():
        return None
    done.touch()
    return binary


def _deps_with_updates(report: Path) -> int:
    """Dependencies for which Renovate's JSON report lists at least one update (proof it looked them up)."""
    try:
        doc = json.loads(report.read_text())
    except (OSError, ValueError):
        return 0
    n = 0
    for repo in (doc.get("repositories") or {}).values():
        for files in (repo.get("packageFiles") or {}).values():
            for pf in files:
                n += sum(1 for dep in pf.get("deps", []) if dep.get("updates"))
    return n


def run() -> dict[str, object]:
    binary = install_renovate()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        server = start_registry("plain", t / "reg", make_pki(t / "pki"))
        try:
            seed(server, t / "reg/data")
            images = [refs.parse(f"{server.host}/bench/app{r:03d}") for r in range(REPOS)]
            t0 = time.perf_counter()
            out = Scanner(Registries(RegistrySettings(host="", plain_http=True, max_concurrency=16)), workers=16).scan(images)
            ours = time.perf_counter() - t0
            assert all(len(r.tags) == TAGS for r in out.values())
            result: dict[str, object] = {"p1_ours_s": ours}
            print(f"P1 find new tags, {REPOS} repositories x {TAGS} tags: imagebot {ours * 1000:6.0f} ms")
            # the whole job, cold, on the same registry: Renovate's lookup-only figure below is its peer
            e2e = t / "e2e"
            e2e.mkdir()
            result.update(run_once.measure(server.host, e2e, server.proc.pid))
            if binary is None:
                result["p1_renovate"] = "not installed (npm install renovate@39 failed or npm missing)"
                print("   Renovate: NOT MEASURED — could not be installed")
                return result
            repo = t / "cfgrepo"
            repo.mkdir()
            for r in range(REPOS):
                (repo / f"app{r:03d}").mkdir()
                (repo / f"app{r:03d}" / "Dockerfile").write_text(f"FROM {server.host}/bench/app{r:03d}:1.0.0\n")
            (repo / "renovate.json").write_text(json.dumps({"extends": [], "enabledManagers": ["dockerfile"]}))
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
                "RENOVATE_HOST_RULES": json.dumps([{"matchHost": server.host, "insecureRegistry": True}]),
                "RENOVATE_BASE_DIR": str(t / "renovate-base"),
                "RENOVATE_CACHE_DIR": str(t / "renovate-cache"),
                "RENOVATE_REPORT_TYPE": "file",
                "RENOVATE_REPORT_PATH": str(t / "report.json"),
            }
            t0 = time.perf_counter()
            proc = subprocess.run([str(binary)], cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
            theirs = time.perf_counter() - t0
            found = _deps_with_updates(t / "report.json")
            if proc.returncode != 0:
                result["p1_renovate"] = (
                    f"failed (exit {proc.returncode}): {proc.stderr.strip()[-300:] or proc.stdout.strip()[-300:]}"
                )
                print(f"   Renovate: FAILED in {theirs:.1f}s — {result['p1_renovate']}")
                return result
            result.update({"p1_renovate_s": theirs, "p1_ratio": theirs / ours, "p1_renovate_updates_seen": found})
            cold = float(result["run_once_cold_s"])  # type: ignore[arg-type]
            print(
                f"   end to end: imagebot run --once (scan, select, edit, commit, push) cold {cold:5.2f} s"
                f" vs Renovate lookup only (no edit, no commit) {theirs:5.1f} s -> {theirs / cold:4.0f}x"
            )
            if found < REPOS:
                result["p1_renovate"] = f"Renovate ran ({theirs:.1f}s) but reported updates for only {found}/{REPOS} images"
                print(f"   Renovate: INCOMPLETE — {result['p1_renovate']}")
                return result
            verdict = "ok" if theirs / ours >= 10 else "MISSED"
            print(
                f"   Renovate --platform=local --dry-run=lookup (updates found for {found}/{REPOS} images): {theirs:6.1f} s"
                f" -> imagebot is {theirs / ours:5.0f}x faster ({verdict}; target >= 10x)"
            )
            return result
        finally:
            server.stop()


if __name__ == "__main__":
    run()
