"""Scan 200 repositories x 300 tags on the local docker-registry (target < 2 s on 2 cores), and the
ratio against a sequential scan in the same run; then peak memory holding 500 x 1,000 tags
(target < 150 MB RSS), listed from a paginating server running in another process.

    python -m bench.scan_registry

Seeding 60,000 tags through the API would take minutes, so each repository gets one real
pushed image and its other tags are written as tag links in the registry's filesystem storage
(the layout distribution 2.8 reads tag lists from).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagebot import refs
from imagebot.registry import Registries, RegistrySettings
from imagebot.registry.scanner import Scanner
from tests.fixtures.pki import make_pki
from tests.fixtures.registry import start_registry

REPOS, TAGS = 200, 300


def seed(server, data: Path) -> None:  # type: ignore[no-untyped-def]
    pusher = server.pusher()
    for r in range(REPOS):
        name = f"bench/app{r:03d}"
        digest = pusher.push(name, ["0.0.0"])["0.0.0"]
        tags_dir = data / "docker/registry/v2/repositories" / name / "_manifests/tags"
        algo, hexd = digest.split(":")
        for t in range(1, TAGS):
            d = tags_dir / f"1.{t // 10}.{t % 10}"
            (d / "current").mkdir(parents=True, exist_ok=True)
            (d / "current/link").write_text(digest)
            (d / f"index/{algo}/{hexd}").mkdir(parents=True, exist_ok=True)
            (d / f"index/{algo}/{hexd}/link").write_text(digest)


def scan_speed() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(Path(tmp) / "pki")
        server = start_registry("plain", Path(tmp) / "reg", pki)
        try:
            t0 = time.perf_counter()
            seed(server, Path(tmp) / "reg/data")
            print(f"seeded {REPOS} x {TAGS} tags in {time.perf_counter() - t0:.1f} s")
            images = [refs.parse(f"{server.host}/bench/app{r:03d}") for r in range(REPOS)]

            def run(workers: int) -> float:
                regs = Registries(RegistrySettings(host="", plain_http=True, max_concurrency=workers))
                t = time.perf_counter()
                out = Scanner(regs, workers=workers).scan(images)
                took = time.perf_counter() - t
                assert len(out) == REPOS and all(len(r.tags) == TAGS for r in out.values()), "incomplete scan"
                return took

            conc = statistics.median(run(16) for _ in range(3))
            seq = statistics.median(run(1) for _ in range(3))
        finally:
            server.stop()
    print(f"scan {REPOS} repositories x {TAGS} tags (median of 3; target < 2 s)")
    print(f"  concurrent (16 workers): {conc * 1000:7.0f} ms  {'ok' if conc < 2 else 'MISSED'}")
    print(f"  sequential (baseline):   {seq * 1000:7.0f} ms   ratio {seq / conc:4.1f}x")
    return {"concurrent_s": conc, "sequential_s": seq}


PAGER_MAIN = """
import sys, time
from tests.fixtures.pager import Pager
p = Pager()
for r in range(500):
    p.repos[f"ok/app{r:03d}"] = [f"2024.{t // 100:02d}.{t % 100:02d}-build.{t}" for t in range(1000)]
print(p.host, flush=True)
sys.stdin.read()
"""


def memory() -> dict[str, float]:
    proc = subprocess.Popen([sys.executable, "-c", PAGER_MAIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        host = proc.stdout.readline().strip()  # type: ignore[union-attr]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        images = [refs.parse(f"{host}/ok/app{r:03d}") for r in range(500)]
        with tempfile.TemporaryDirectory() as tmp:
            from imagebot.registry.state import ScanState

            t0 = time.perf_counter()
            out = Scanner(Registries(RegistrySettings(host="", plain_http=True)), ScanState(Path(tmp) / "s.db")).scan(images)
            took = time.perf_counter() - t0
        held = sum(len(r.tags) for r in out.values())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)
    print(f"hold 500 repositories x 1,000 tags ({held:,} tags, with SQLite first-seen state) in {took:.1f} s")
    print(
        f"  peak RSS {peak:6.1f} MB (interpreter and imports before the scan: {before:.1f} MB)  "
        f"{'ok' if peak < 150 else 'MISSED'} (target < 150 MB)"
    )
    return {"peak_rss_mb": peak, "baseline_rss_mb": before}


if __name__ == "__main__":
    scan_speed()
    memory()


def all_figures() -> dict[str, float]:
    return {**scan_speed(), **memory()}
