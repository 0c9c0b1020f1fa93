"""Median time from "change set ready" to "commit visible on the remote", over smart HTTP and SSH.

Each round: deliver() (fetch the tip, edit, commit, push) on a warm cached workspace, then the
remote branch is read back to confirm the commit is there. Baseline in the same run: a plain
``git clone --depth 1`` + commit + push with the git CLI, what a script without a cache does.

    python -m bench.git_delivery
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from gitopskit.workspace import GitAuth, Workspace
from imagebot import refs
from imagebot.gitops.writer import Delivery, deliver
from imagebot.update import EditRequest
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, chown_for_ssh, git, make_bare, start_sshd

DOC = 'image: ghcr.io/org/app:0 # {"$imagepolicy": "apps:app"}\n'
ROUNDS = 15


def measure(ws: Workspace, bare: Path) -> list[float]:
    out = []
    for i in range(1, ROUNDS + 1):
        req = EditRequest(policies={"apps:app": refs.parse(f"ghcr.io/org/app:{i}")})
        t0 = time.perf_counter()
        r = deliver(ws, Delivery(), req)
        visible = git("-C", str(bare), "rev-parse", "main").strip()
        out.append(time.perf_counter() - t0)
        assert visible == r.commit
    return out


def baseline(url: str, env: dict[str, str], tmp: Path) -> list[float]:
    out = []
    for i in range(5):
        d = tmp / f"b{i}"
        t0 = time.perf_counter()
        subprocess.run(["git", "clone", "-q", "--depth", "1", url, str(d)], check=True, env=env)
        (d / "x.yaml").write_text(f"n: {i}\n")
        subprocess.run(["git", "-C", str(d), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(d), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "b"], check=True)
        subprocess.run(["git", "-C", str(d), "push", "-q", "origin", "HEAD:main"], check=True, env=env)
        out.append(time.perf_counter() - t0)
        shutil.rmtree(d)
    return out


def report(name: str, runs: list[float], base: list[float]) -> dict[str, float]:
    med = statistics.median(runs)
    print(
        f"  {name:<5} deliver: median {med * 1000:6.0f} ms  p90 {sorted(runs)[int(len(runs) * 0.9) - 1] * 1000:6.0f} ms"
        f"   baseline clone+commit+push {statistics.median(base) * 1000:6.0f} ms  ({statistics.median(base) / med:3.1f}x)"
    )
    return {f"{name.lower()}_median_s": med, f"{name.lower()}_baseline_s": statistics.median(base)}


def main() -> dict[str, float]:
    out: dict[str, float] = {}
    print(f"change set ready -> commit visible on the remote ({ROUNDS} rounds, warm workspace cache)")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        http = GitHttp(t / "http")
        try:
            bare = make_bare(http.root, "cfg", {"a.yaml": DOC})
            ws = Workspace(http.url(bare), "main", t / "cache-http", GitAuth(GIT_USER, GIT_PASSWORD))
            runs = measure(ws, bare)
            hdr = {**os.environ, **GitAuth(GIT_USER, GIT_PASSWORD).environment()}
            out.update(report("HTTP", runs, baseline(http.url(bare), hdr, t)))
        finally:
            http.stop()
        if os.geteuid() == 0:
            repos = Path(tempfile.mkdtemp(prefix="imagebot-ssh-repos-"))
            repos.chmod(0o755)
            work = Path(tempfile.mkdtemp(prefix="imagebot-sshd-"))
            sshd = start_sshd(work, repos)
            try:
                bare = make_bare(repos, "cfg", {"a.yaml": DOC})
                chown_for_ssh(bare)
                auth = GitAuth(ssh_key=sshd.client_key, known_hosts=sshd.known_hosts)
                runs = measure(Workspace(sshd.url(bare), "main", t / "cache-ssh", auth), bare)
                out.update(report("SSH", runs, baseline(sshd.url(bare), {**os.environ, **auth.environment()}, t)))
            finally:
                sshd.stop()
                shutil.rmtree(repos, ignore_errors=True)
                shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
