"""Cold end-to-end `imagebot run --once` for 200 images x 300 tags: a fresh process loads the
1,200-line configuration, scans the local registry, selects per image, edits 200 manifests in one
commit and pushes it to a bare repository over smart HTTP. Target < 1 s on this machine.

    python -m bench.run_once          (seeds its own registry)

`bench.renovate_peer` calls :func:`measure` on the registry it seeded, so the figure is reported
beside Renovate's in the same run. Each repetition starts from the same Git tip and an empty state,
so each one does the whole job; the median of 3 is reported with the import and config-load parts.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scan_registry import REPOS, seed
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, git, make_bare
from tests.fixtures.pki import make_pki
from tests.fixtures.registry import start_registry

RUNS = 3
TARGET_S = 1.0

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app{r:03d}  # one file per image
spec:
  template:
    spec:
      containers:
        - name: app
          image: {host}/bench/app{r:03d}:0.0.0 # {{"$imagepolicy": "bench:app{r:03d}"}}
"""


def config(host: str, url: str, state: Path, cache: Path) -> str:
    head = f"""apiVersion: imagebot.dev/v1
kind: Config
interval: 1h
stateFile: {state}
cacheDir: {cache}
registries:
  - {{host: "{host}", plainHTTP: true, maxConcurrency: 16}}
git:
  - name: config
    url: {url}
    auth: {{usernameEnv: BENCH_GIT_USER, tokenEnv: BENCH_GIT_TOKEN}}
images:
"""
    body = "".join(
        f"""  - name: app{r:03d}
    repository: {host}/bench/app{r:03d}
    environments:
      prod:
        policy: {{semver: "^1"}}
        setter: bench:app{r:03d}
        target: {{git: config, path: apps}}
"""
        for r in range(REPOS)
    )
    return head + body


def _cpu_of(pid: int | None) -> float:
    """CPU seconds process ``pid`` has used so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(host: str, work: Path, registry_pid: int | None = None) -> dict[str, float]:
    """Median cold `run --once` seconds (and its import / config-load parts) against registry ``host``; with
    ``registry_pid``, also the CPU the registry spent answering (it shares the machine's cores with the bot)."""
    http = GitHttp(work / "git")
    try:
        files = {f"apps/app{r:03d}.yaml": DEPLOY.format(r=r, host=host) for r in range(REPOS)}
        bare = make_bare(http.root, "fleet", files)
        tip = git("-C", str(bare), "rev-parse", "main").strip()
        env = {**os.environ, "BENCH_GIT_USER": GIT_USER, "BENCH_GIT_TOKEN": GIT_PASSWORD}
        cfg = work / "imagebot.yaml"
        totals, loads, imports, cpus, served = [], [], [], [], []
        for i in range(RUNS):
            state, cache = work / f"state{i}", work / f"cache{i}"
            state.mkdir()
            cfg.write_text(config(host, http.url(bare), state / "state.db", cache))
            git("-C", str(bare), "update-ref", "refs/heads/main", tip)  # the same job every time
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            reg_before = _cpu_of(registry_pid)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "imagebot", "run", "--once", "--config", str(cfg), "--log-level", "WARNING"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            totals.append(time.perf_counter() - t0)
            served.append(_cpu_of(registry_pid) - reg_before)
            # the bot, the git it ran and the git-http-backend that served it (children of this process); not the registry
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if proc.returncode != 0 or git("-C", str(bare), "rev-parse", "main").strip() == tip:
                raise RuntimeError(f"run --once did not push (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
            shutil.rmtree(cache, ignore_errors=True)
            probe = (
                "import time; t=time.perf_counter(); import imagebot.cli, imagebot.runtime.commands; i=time.perf_counter()-t; "
                "from pathlib import Path; from imagebot.config.load import load; t=time.perf_counter(); "
                f"load([Path({str(cfg)!r})]); print(i, time.perf_counter()-t)"
            )
            parts = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
            a, b = (float(x) for x in parts.stdout.split())
            imports.append(a)
            loads.append(b)
        lines = len(cfg.read_text().splitlines())
    finally:
        http.stop()
    total, imp, load = statistics.median(totals), statistics.median(imports), statistics.median(loads)
    cpu, reg = statistics.median(cpus), statistics.median(served)
    verdict = "ok" if total < TARGET_S else "MISSED"
    busy = os.getloadavg()[0]
    print(
        f"imagebot run --once, cold end to end ({REPOS} images x 300 tags; scan, select, edit {REPOS} files, commit, push;"
        f" median of {RUNS}): {total:5.2f} s ({verdict}; target < {TARGET_S:.0f} s)\n"
        f"   of which imports {imp * 1000:4.0f} ms, loading the {lines}-line config {load * 1000:4.0f} ms"
        f" (runs: {', '.join(f'{t:.2f}' for t in totals)} s)\n"
        f"   CPU time of the bot and its git processes {cpu:4.2f} s"
        + (f"; of the registry answering its ~600 requests {reg:4.2f} s (same cores)" if registry_pid else "")
        + f"; load average {busy:.1f} on {os.cpu_count()} cores"
        f"{' (machine busy: wall time inflated)' if busy > (os.cpu_count() or 1) else ''}"
    )
    return {
        "run_once_cold_s": total,
        "run_once_cpu_s": cpu,
        "run_once_imports_s": imp,
        "run_once_config_load_s": load,
        "run_once_registry_cpu_s": reg,
        "load_average": busy,
    }


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        server = start_registry("plain", t / "reg", make_pki(t / "pki"))
        try:
            seed(server, t / "reg/data")
            return measure(server.host, t, server.proc.pid)
        finally:
            server.stop()


if __name__ == "__main__":
    run()
