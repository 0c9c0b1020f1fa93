"""`make demo`: the whole GitOps loop on local, real parts, narrated with timings.

Starts Debian's docker-registry, a config repository (bare git over smart HTTP) and the test
Kubernetes API server, then runs ``imagebot serve`` and ``reconciler run`` as the processes
an operator would run, and walks through:

1. push ``demo/app:1.0.0``; the reconciler applies the config repo (Deployments at 1.0.0, 1 replica);
2. "CI" pushes ``1.1.0`` and ``1.2.0-rc.1`` and posts a signed webhook; the bot commits ``1.1.0``
   for prod (semver ``^1``) and ``1.2.0-rc.1`` for dev (pre-releases allowed);
3. the reconciler applies the new commit: the live images change;
4. a manual ``kubectl scale`` (replicas 1 → 4, another field manager) is detected, attributed, healed;
5. a summary table; everything started is stopped (``--keep`` leaves it running).

Exits non-zero, loudly, if any step does not happen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagebot.runtime.webhooks import sign  # noqa: E402
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, git, make_bare  # noqa: E402
from tests.fixtures.net import free_port  # noqa: E402
from tests.fixtures.pki import make_pki  # noqa: E402
from tests.fixtures.registry import RegistryServer, start_registry  # noqa: E402

SECRET = "demo-webhook-secret"
VENV_BIN = Path(sys.executable).parent


class DemoFailed(Exception):
    pass


def deployment(name: str, registry: str, env: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: demo
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {registry}/demo/app:1.0.0 # {{"$imagepolicy": "demo:app-{env}"}}
"""


def bot_config(registry: str, repo_url: str, state: Path, cache: Path) -> str:
    return f"""apiVersion: imagebot.dev/v1
kind: Config
interval: 1h
debounce: 300ms
stateFile: {state}
cacheDir: {cache}
webhookSecretEnv: IMAGEBOT_WEBHOOK_SECRET
registries:
  - host: {registry}
    plainHTTP: true
git:
  - name: config
    url: {repo_url}
    branch: main
    auth: {{usernameEnv: DEMO_GIT_USER, tokenEnv: DEMO_GIT_TOKEN}}
images:
  - name: app
    repository: {registry}/demo/app
    environments:
      prod:
        policy: {{semver: "^1"}}
        setter: demo:app-prod
        target: {{git: config, path: clusters/demo/prod}}
      dev:
        policy: {{semver: ">=1.0.0-0"}}
        setter: demo:app-dev
        target: {{git: config, path: clusters/demo/dev}}
"""


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for: {what}")


class Demo:
    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.work = Path(tempfile.mkdtemp(prefix="imagebot-demo-"))
        self.rows: list[tuple[str, str, float]] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.registry: RegistryServer | None = None
        self.git_http: GitHttp | None = None
        self.kube_dir = self.work / "kube"
        self.kubeconfig = ""

    def step(self, name: str, fn: Callable[[], str]) -> None:
        print(f"\n▶ {name}", flush=True)
        t0 = time.perf_counter()
        what = fn()
        took = time.perf_counter() - t0
        self.rows.append((name, what, took))
        print(f"  ✓ {what}  ({took:.2f}s)", flush=True)

    def kubectl(self, *args: str) -> str:
        proc = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True)
        if proc.returncode:
            raise DemoFailed(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def live(self, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("-n", "demo", "get", "deployment", name, "-o", "json"))

    def image_of(self, name: str) -> str:
        try:
            return str(self.live(name)["spec"]["template"]["spec"]["containers"][0]["image"])
        except DemoFailed:
            return ""

    # ------------------------------------------------------------------ steps
    def start_parts(self) -> str:
        pki = make_pki(self.work / "pki")
        self.registry = start_registry("plain", self.work / "registry", pki)
        self.git_http = GitHttp(self.work / "git")
        reg = self.registry.host
        self.bare = make_bare(
            self.git_http.root,
            "config",
            {
                "clusters/demo/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
                "clusters/demo/prod/deploy.yaml": deployment("app-prod", reg, "prod"),
                "clusters/demo/dev/deploy.yaml": deployment("app-dev", reg, "dev"),
                "README.md": "# demo config repo\n",
            },
        )
        self.repo_url = self.git_http.url(self.bare)
        up = subprocess.run([str(ROOT / "tests/cluster/cluster.sh"), "up", str(self.kube_dir)], capture_output=True, text=True)
        if up.returncode:
            raise DemoFailed(f"the test apiserver did not start:\n{up.stderr}")
        self.kubeconfig = up.stdout.strip()
        return f"registry {reg}, config repo {self.repo_url}, apiserver ({self.kubeconfig})"

    def push_first(self) -> str:
        assert self.registry is not None
        digests = self.registry.pusher().push("demo/app", ["1.0.0"])
        return f"pushed {self.registry.host}/demo/app:1.0.0 ({digests['1.0.0'][:19]}…)"

    def start_reconciler(self) -> str:
        env = {
            **os.environ,
            "RECONCILER_GIT_USERNAME": GIT_USER,
            "RECONCILER_GIT_TOKEN": GIT_PASSWORD,
            "XDG_CACHE_HOME": str(self.work / "cache-reconciler"),
        }
        self.reconciler_log = self.work / "reconciler.log"
        self.procs.append(
            subprocess.Popen(
                [
                    str(VENV_BIN / "reconciler"),
                    "--log-level",
                    "INFO",
                    "run",
                    "--kubeconfig",
                    self.kubeconfig,
                    "--source",
                    self.repo_url,
                    "--path",
                    "clusters/demo",
                    "--name",
                    "demo",
                    "--inventory-namespace",
                    "default",
                    "--interval",
                    "0.5",
                    "--prune",
                ],
                stdout=open(self.reconciler_log, "wb"),  # noqa: SIM115 - the process owns its log
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        wait_until(
            "the reconciler to apply Deployments at 1.0.0",
            lambda: self.image_of("app-prod").endswith(":1.0.0") and self.image_of("app-dev").endswith(":1.0.0"),
        )
        replicas = self.live("app-prod")["spec"]["replicas"]
        return f"reconciler applied the config repo: app-prod and app-dev at 1.0.0, {replicas} replica"

    def start_bot(self) -> str:
        assert self.registry is not None
        cfg = self.work / "imagebot.yaml"
        cfg.write_text(bot_config(self.registry.host, self.repo_url, self.work / "imagebot-state.db", self.work / "cache-bot"))
        check = subprocess.run([str(VENV_BIN / "imagebot"), "config", "validate", str(cfg)], capture_output=True, text=True)
        if check.returncode:
            raise DemoFailed(f"demo config invalid: {check.stderr}")
        self.bot_port = free_port()
        env = {**os.environ, "IMAGEBOT_WEBHOOK_SECRET": SECRET, "DEMO_GIT_USER": GIT_USER, "DEMO_GIT_TOKEN": GIT_PASSWORD}
        self.bot_log = self.work / "imagebot.log"
        self.procs.append(
            subprocess.Popen(
                [str(VENV_BIN / "imagebot"), "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{self.bot_port}"],
                stdout=open(self.bot_log, "wb"),  # noqa: SIM115 - the process owns its log
                stderr=subprocess.STDOUT,
                env=env,
            )
        )

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.bot_port}/readyz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until("imagebot serve to be ready", ready)
        return f"imagebot serve listening on 127.0.0.1:{self.bot_port} (webhooks, /metrics); first pass: nothing new"

    def ci_publishes(self) -> str:
        assert self.registry is not None
        before = git("-C", str(self.bare), "rev-parse", "main").strip()
        self.registry.pusher().push("demo/app", ["1.1.0", "1.2.0-rc.1"], distinct=True)
        body = json.dumps(
            {
                "events": [
                    {"action": "push", "target": {"repository": "demo/app", "tag": t}, "request": {"host": self.registry.host}}
                    for t in ("1.1.0", "1.2.0-rc.1")
                ]
            }
        ).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.bot_port}/",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-Imagebot-Signature-256": sign(SECRET, body)},
        )
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=5) as r:
            if r.status != 202:
                raise DemoFailed(f"webhook not accepted: HTTP {r.status}")

        def both_committed() -> bool:
            prod = git("-C", str(self.bare), "show", "main:clusters/demo/prod/deploy.yaml")
            dev = git("-C", str(self.bare), "show", "main:clusters/demo/dev/deploy.yaml")
            return "app:1.1.0 " in prod and "app:1.2.0-rc.1 " in dev

        wait_until("the bot to commit 1.1.0 (prod) and 1.2.0-rc.1 (dev)", both_committed)
        latency = time.monotonic() - t0

        def metric_commits() -> float:
            # the remote ref moves before the bot's push call returns and counts it: poll, don't read once
            with urllib.request.urlopen(f"http://127.0.0.1:{self.bot_port}/metrics", timeout=5) as r:
                metrics = r.read().decode()
            return next((float(ln.split()[-1]) for ln in metrics.splitlines() if ln.startswith("imagebot_commits_total ")), 0.0)

        try:
            wait_until("imagebot_commits_total to reach 2", lambda: metric_commits() >= 2, timeout=10)
        except DemoFailed:
            raise DemoFailed(f"/metrics counts {metric_commits():.0f} commits, expected 2") from None
        commits = metric_commits()
        subjects = git("-C", str(self.bare), "log", "--format=%s", f"{before}..main").strip().splitlines()
        return f"webhook → commits in {latency:.2f}s ({commits:.0f} in /metrics): " + " | ".join(reversed(subjects))

    def reconciler_applies(self) -> str:
        wait_until(
            "the live images to change",
            lambda: self.image_of("app-prod").endswith(":1.1.0") and self.image_of("app-dev").endswith(":1.2.0-rc.1"),
        )
        prod, dev = (self.image_of(n).rsplit("/", 1)[-1] for n in ("app-prod", "app-dev"))
        return f"live: app-prod {prod}, app-dev {dev}"

    def manual_change_healed(self) -> str:
        self.kubectl("-n", "demo", "scale", "deployment/app-prod", "--replicas=4")
        t0 = time.monotonic()
        wait_until("the drift to be healed (replicas back to 1)", lambda: self.live("app-prod")["spec"].get("replicas") == 1)
        healed = time.monotonic() - t0

        def attributed() -> str:
            lines = [
                ln for ln in self.reconciler_log.read_text(errors="replace").splitlines() if "drift on" in ln and "app-prod" in ln
            ]
            return lines[-1].split("drift on ", 1)[1] if lines else ""

        line = wait_until("the drift to be attributed in the reconciler's log", attributed, 5)
        return f"kubectl scale to 4 healed back to 1 in {healed:.2f}s; attributed: {line}"

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.registry is not None:
            self.registry.stop()
        if self.git_http is not None:
            self.git_http.stop()
        if self.kubeconfig:
            subprocess.run([str(ROOT / "tests/cluster/cluster.sh"), "down", str(self.kube_dir)], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def run(self) -> int:
        try:
            self.step("0. start the real local parts", self.start_parts)
            self.step("1a. CI pushes demo/app:1.0.0", self.push_first)
            self.step("1b. the reconciler applies the config repo", self.start_reconciler)
            self.step("2a. the bot starts (imagebot serve)", self.start_bot)
            self.step("2b. CI pushes 1.1.0 + 1.2.0-rc.1 and posts the webhook", self.ci_publishes)
            self.step("3. the reconciler applies the new commit", self.reconciler_applies)
            self.step("4. a manual change is detected, attributed and healed", self.manual_change_healed)
        except DemoFailed as exc:
            print(f"\n✗ DEMO FAILED: {exc}", file=sys.stderr)
            for name in ("imagebot.log", "reconciler.log"):
                log = self.work / name
                if log.exists():
                    print(f"--- {name} (tail)\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            self.stop()
            return 1
        print("\nstep                                                      took  what happened")
        for name, what, took in self.rows:
            print(f"{name:<56} {took:6.2f}s  {what[:110]}")
        if self.keep:
            print(
                f"\nleft running (--keep). Explore:\n  export KUBECONFIG={self.kubeconfig}\n"
                "  kubectl -n demo get deploy -o wide\n"
                f"  git -C {self.bare} log --oneline\n  curl -s http://127.0.0.1:{self.bot_port}/metrics | grep imagebot_\n"
                f"  logs: {self.work}/imagebot.log {self.work}/reconciler.log\n"
                f"stop: kill {' '.join(str(p.pid) for p in self.procs)}; tests/cluster/cluster.sh down {self.kube_dir}"
            )
        else:
            self.stop()
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="leave everything running, with the commands to explore it")
    args = ap.parse_args(argv)
    return Demo(args.keep).run()


if __name__ == "__main__":
    sys.exit(main())
