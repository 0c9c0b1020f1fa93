"""`make demo`: the whole GitOps loop on local, real parts, narrated with timings.

Starts Debian's docker-registry, a config repository (bare git over smart HTTP) and the test
Kubernetes API server, installs the CRDs of ``deploy/crds/`` and declares the demo's app as objects
(a Flux GitRepository with its basic-auth Secret, and a Kustomization), then runs ``imagebot serve``,
``reconciler controller --leader-elect`` and ``dashboard serve`` (its URL printed on a line of its own,
``dashboard: http://…``) as the processes an operator would run, and walks through:

1. push ``demo/app:1.0.0``; the controller applies the config repo (Deployments at 1.0.0, 1 replica) and
   marks the Kustomization Ready at the repo's commit;
2. "CI" pushes ``1.1.0`` and ``1.2.0-rc.1`` and posts a signed webhook; the bot commits ``1.1.0``
   for prod (semver ``^1``) and ``1.2.0-rc.1`` for dev (pre-releases allowed);
3. the controller applies the new commit: the live images change, each Deployment's generation rises
   exactly once (a forced re-run changes nothing), the Kustomization's lastAppliedRevision is the bot's
   commit (``kubectl get kustomizations`` and ``reconciler get -A`` are printed);
4. a manual ``kubectl scale`` (replicas 1 → 4, another field manager) is detected, attributed, healed —
   and the dashboard's app page shows the correction with who made the change;
5. a summary table; everything started is stopped.

Every server is a process of its own (its own session, so a Ctrl-C at the terminal reaches only the
demo), recorded in a pid file in the work folder. Whatever ends the demo — a failed step, an error,
Ctrl-C, SIGTERM, SIGHUP — stops everything it started and removes the work folder. With ``--keep``
a successful run leaves the loop running and prints the commands to explore it and one line that
stops it all (``--stop DIR``); ``--push DIR TAG...`` plays CI once more against a kept demo.

kubectl is whatever ``tests/tools/kubectl.sh`` finds (``$IMAGEBOT_KUBECTL``, PATH, else Debian sid's
package fetched once into ``~/.cache/imagebot/kubectl``).

Exit: 0 ok; 1 a step did not happen (or a part is missing: the message says which); 2 usage
(``--stop``/``--push`` on a folder that is not a kept demo); 130 Ctrl-C; 143 SIGTERM; 129 SIGHUP.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagebot.runtime.webhooks import sign  # noqa: E402
from tests.fixtures.botconfig import git_env, imagebot_config  # noqa: E402
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, git, make_bare  # noqa: E402
from tests.fixtures.net import free_port, port_open  # noqa: E402
from tests.fixtures.oci import Pusher  # noqa: E402
from tests.tools.kubectl import KubectlUnavailable, kubectl  # noqa: E402

SECRET = "demo-webhook-secret"
VENV_BIN = Path(sys.executable).parent
CLUSTER_SH = ROOT / "tests/cluster/cluster.sh"
MARKER = ".imagebot-demo"  # only a folder holding this file is a demo's: --stop removes nothing else
SERVERS = ("dashboard", "imagebot", "controller", "git-http", "registry")  # stop order; etcd + apiserver go last (cluster.sh)
STOP_TIMEOUT = 10.0  # per process, SIGTERM → SIGKILL
CRDS = ROOT / "deploy/crds"
APP_NS = "flux-system"  # where the demo's app objects live, as with Flux
KS = "demo"  # the Kustomization (and GitRepository, Secret "demo-git") of the demo's app


class DemoFailed(Exception):
    pass


class Interrupted(BaseException):
    """A signal ended the demo (SIGINT arrives as KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
    images = f"""images:
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
    return imagebot_config(images, state=state, cache=cache, registries=[registry], url=repo_url, env="DEMO",
                           settings="debounce: 300ms\nwebhookSecretEnv: IMAGEBOT_WEBHOOK_SECRET")  # fmt: skip


def app_objects(repo_url: str) -> str:
    """The demo's app as Flux declares it. The Secret is in Flux's basic-auth format, base64 ``data`` (the test
    API server does not fold ``stringData`` into ``data``); 1s intervals stand in for a Git webhook."""
    user, password = (base64.b64encode(v.encode()).decode() for v in (GIT_USER, GIT_PASSWORD))
    return f"""apiVersion: v1
kind: Namespace
metadata:
  name: {APP_NS}
---
apiVersion: v1
kind: Secret
metadata:
  name: {KS}-git
  namespace: {APP_NS}
data:
  username: {user}
  password: {password}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: {KS}
  namespace: {APP_NS}
spec:
  url: {repo_url}
  ref: {{branch: main}}
  interval: 1s
  secretRef: {{name: {KS}-git}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {KS}
  namespace: {APP_NS}
spec:
  sourceRef: {{kind: GitRepository, name: {KS}}}
  path: ./clusters/demo
  interval: 1s
  prune: true
"""


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise DemoFailed(f"{what}: {Path(proc.args[0]).name} exited with {proc.returncode}")  # type: ignore[index]
        time.sleep(0.05)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for: {what}")


# ---------------------------------------------------------------- processes recorded by pid file
def _pid_file(work: Path, name: str) -> Path:
    return work / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child, else it lingers as a zombie
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ours(pid: int, work: Path) -> bool:
    """Every server the demo starts names its work folder on its command line: a reused PID does not."""
    try:
        return str(work).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_process(work: Path, name: str) -> None:
    """SIGTERM the process group recorded in WORK/pids/NAME.pid (SIGKILL after STOP_TIMEOUT), if still ours."""
    f = _pid_file(work, name)
    try:
        pid = int(f.read_text().strip())
    except (OSError, ValueError):
        return
    if _alive(pid) and _ours(pid, work):
        group = os.getpgid(pid) == pid  # started as a session leader: its children (git, CGI) go too
        kill = os.killpg if group else os.kill
        with contextlib.suppress(ProcessLookupError):
            kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            print(f"{name} ({pid}) ignored SIGTERM; sending SIGKILL", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                kill(pid, signal.SIGKILL)
            while _alive(pid) and time.monotonic() < deadline + STOP_TIMEOUT:
                time.sleep(0.05)
    f.unlink(missing_ok=True)


def stop_cluster(work: Path) -> None:
    if (work / "kube").is_dir():
        subprocess.run([str(CLUSTER_SH), "down", str(work / "kube")], capture_output=True, stdin=subprocess.DEVNULL)


def remove_work(work: Path) -> None:
    if (work / MARKER).exists():
        shutil.rmtree(work, ignore_errors=True)


def stop_all(work: Path) -> None:
    for name in SERVERS:
        stop_process(work, name)
    stop_cluster(work)
    remove_work(work)


@dataclass(frozen=True, slots=True)
class Kept:
    """What a kept demo recorded in WORK/demo.json: enough for --push and for a person to explore."""

    work: Path
    registry: str
    bot: str
    repo_url: str
    bare: Path
    kubeconfig: str
    kubectl: str

    @staticmethod
    def load(work: Path) -> Kept:
        data = json.loads((work / "demo.json").read_text())
        return Kept(
            work, data["registry"], data["bot"], data["repo_url"], Path(data["bare"]), data["kubeconfig"], data["kubectl"]
        )

    def save(self) -> None:
        data = {k: str(getattr(self, k)) for k in ("registry", "bot", "repo_url", "bare", "kubeconfig", "kubectl")}
        (self.work / "demo.json").write_text(json.dumps(data, indent=2) + "\n")


def publish(registry: str, bot: str, tags: list[str]) -> None:
    """Play CI: push TAGS of demo/app (distinct images) and post the signed webhook that announces them."""
    Pusher(f"http://{registry}").push("demo/app", tags, distinct=True)
    body = json.dumps(
        {
            "events": [
                {"action": "push", "target": {"repository": "demo/app", "tag": t}, "request": {"host": registry}} for t in tags
            ]
        }
    ).encode()
    req = urllib.request.Request(
        f"http://{bot}/",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Imagebot-Signature-256": sign(SECRET, body)},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        if r.status != 202:
            raise DemoFailed(f"webhook not accepted: HTTP {r.status}")


def stop_command(work: Path) -> str:
    return f"{sys.executable} {ROOT / 'tests/demo.py'} --stop {work}"


class Demo:
    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.work = Path()
        self.rows: list[tuple[str, str, float]] = []
        self.cleanup = contextlib.ExitStack()  # the one place that knows what to undo, newest first
        self.kubeconfig = ""
        self.kubectl_bin = "kubectl"
        self.dashboard = ""

    @property
    def kube_dir(self) -> Path:
        return self.work / "kube"

    def step(self, name: str, fn: Callable[[], str]) -> None:
        print(f"\n▶ {name}", flush=True)
        t0 = time.perf_counter()
        what = fn()
        took = time.perf_counter() - t0
        self.rows.append((name, what, took))
        print(f"  ✓ {what}  ({took:.2f}s)", flush=True)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a server detached (its own session, stdin closed, output to WORK/NAME.log), record its pid."""
        self.cleanup.callback(stop_process, self.work, name)  # before the start: a signal may land in between
        with open(self.work / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
            )
        _pid_file(self.work, name).write_text(f"{proc.pid}\n")
        return proc

    def run_kubectl(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args], input=stdin, capture_output=True, text=True
        )
        if proc.returncode:
            raise DemoFailed(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def live(self, name: str) -> dict[str, Any]:
        return json.loads(self.run_kubectl("-n", "demo", "get", "deployment", name, "-o", "json"))

    def image_of(self, name: str) -> str:
        try:
            return str(self.live(name)["spec"]["template"]["spec"]["containers"][0]["image"])
        except DemoFailed:
            return ""

    def kustomization(self) -> tuple[str, str]:
        """(Ready condition's status, lastAppliedRevision) of the demo's Kustomization, as the controller wrote them."""
        obj = json.loads(self.run_kubectl("-n", APP_NS, "get", "kustomization", KS, "-o", "json"))
        st = obj.get("status") or {}
        ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
        return str(ready.get("status", "Unknown")), str(st.get("lastAppliedRevision", ""))

    def applied(self, sha: str) -> bool:
        return self.kustomization() == ("True", f"main@sha1:{sha}")

    def show(self, argv: list[str]) -> None:
        """Print what a person would type and what it answers, indented under the step."""
        shown = ["kubectl" if a == self.kubectl_bin else "reconciler" if a == str(VENV_BIN / "reconciler") else a
                 for a in argv if a not in ("--kubeconfig", self.kubeconfig)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode:
            raise DemoFailed(f"{' '.join(shown)}: {done.stderr.strip()}")
        print(f"  $ {' '.join(shown)}", flush=True)
        for line in done.stdout.rstrip().splitlines():
            print(f"    {line}", flush=True)

    # ------------------------------------------------------------------ steps
    def start_registry(self) -> str:
        reg = self.work / "registry"
        reg.mkdir()
        port = free_port()
        cfg = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(reg / "data")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
        }
        (reg / "config.yml").write_text(json.dumps(cfg))  # JSON is YAML
        exe = shutil.which("docker-registry")
        if exe is None:
            raise DemoFailed("docker-registry is not installed: run tests/system/install.sh (Debian package docker-registry)")
        proc = self.spawn("registry", [exe, "serve", str(reg / "config.yml")])

        def v2() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until("docker-registry to answer /v2/", lambda: port_open(port) and v2(), proc=proc)
        return f"127.0.0.1:{port}"

    def start_git(self) -> str:
        root = self.work / "git"
        root.mkdir()
        port_file = self.work / "git-http.port"
        proc = self.spawn("git-http", [sys.executable, "-m", "tests.tools.git_http", str(root), str(port_file)])
        port = int(
            wait_until("the git HTTP server to listen", lambda: port_file.exists() and port_file.read_text().strip(), proc=proc)
        )
        self.bare = make_bare(
            root,
            "config",
            {
                "clusters/demo/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
                "clusters/demo/prod/deploy.yaml": deployment("app-prod", self.registry, "prod"),
                "clusters/demo/dev/deploy.yaml": deployment("app-dev", self.registry, "dev"),
                "README.md": "# demo config repo\n",
            },
        )
        return f"http://127.0.0.1:{port}/{self.bare.relative_to(root).as_posix()}"

    def start_parts(self) -> str:
        try:
            self.kubectl_bin = kubectl()
        except KubectlUnavailable as exc:
            raise DemoFailed(str(exc)) from None
        self.registry = self.start_registry()
        self.repo_url = self.start_git()
        self.cleanup.callback(stop_cluster, self.work)
        # its own session too: etcd and the apiserver must not get the terminal's Ctrl-C meant for the demo
        up = subprocess.run(
            [str(CLUSTER_SH), "up", str(self.kube_dir)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if up.returncode:
            raise DemoFailed(f"the test apiserver did not start:\n{up.stderr}")
        self.kubeconfig = up.stdout.strip()
        return f"registry {self.registry}, config repo {self.repo_url}, apiserver ({self.kubeconfig}), kubectl {self.kubectl_bin}"

    def push_first(self) -> str:
        digests = Pusher(f"http://{self.registry}").push("demo/app", ["1.0.0"])
        return f"pushed {self.registry}/demo/app:1.0.0 ({digests['1.0.0'][:19]}…)"

    def declare_app(self) -> str:
        self.run_kubectl("apply", "-f", str(CRDS))
        self.run_kubectl("wait", "--for", "condition=Established", "--timeout", "60s", "-f", str(CRDS))
        crds = len(list(CRDS.glob("*.yaml")))
        self.run_kubectl("apply", "-f", "-", stdin=app_objects(self.repo_url))
        return f"{crds} CRDs installed (deploy/crds/); {APP_NS}: Secret {KS}-git, GitRepository {KS}, Kustomization {KS}"

    def start_controller(self) -> str:
        env = {
            **os.environ,
            # kustomize renders through kubectl: the one the demo found, also when it was fetched
            "PATH": f"{Path(self.kubectl_bin).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.controller_log = self.work / "controller.log"
        proc = self.spawn(
            "controller",
            [
                str(VENV_BIN / "reconciler"),
                "--log-level",
                "INFO",
                "controller",
                "--kubeconfig",
                self.kubeconfig,
                "--leader-elect",
                "--leader-namespace",
                APP_NS,
                "--cache",
                str(self.work / "cache-controller"),
            ],
            env,
        )
        sha = git("-C", str(self.bare), "rev-parse", "main").strip()
        wait_until(
            "the controller to apply Deployments at 1.0.0",
            lambda: self.image_of("app-prod").endswith(":1.0.0") and self.image_of("app-dev").endswith(":1.0.0"),
            proc=proc,
        )
        wait_until(f"Kustomization {APP_NS}/{KS} Ready at main@sha1:{sha[:12]}…", lambda: self.applied(sha), proc=proc)
        self.generations = {n: int(self.live(n)["metadata"]["generation"]) for n in ("app-prod", "app-dev")}
        replicas = self.live("app-prod")["spec"]["replicas"]
        return f"Kustomization {KS} Ready at main@sha1:{sha[:12]}: app-prod and app-dev at 1.0.0, {replicas} replica"

    def start_bot(self) -> str:
        cfg = self.work / "imagebot.yaml"
        cfg.write_text(bot_config(self.registry, self.repo_url, self.work / "imagebot-state.db", self.work / "cache-bot"))
        check = subprocess.run([str(VENV_BIN / "imagebot"), "config", "validate", str(cfg)], capture_output=True, text=True)
        if check.returncode:
            raise DemoFailed(f"demo config invalid: {check.stderr}")
        self.bot = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "IMAGEBOT_WEBHOOK_SECRET": SECRET, **git_env("DEMO")}
        self.bot_log = self.work / "imagebot.log"
        proc = self.spawn("imagebot", [str(VENV_BIN / "imagebot"), "serve", "--config", str(cfg), "--listen", self.bot], env)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://{self.bot}/readyz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until("imagebot serve to be ready", ready, proc=proc)
        return f"imagebot serve listening on {self.bot} (webhooks, /metrics); first pass: nothing new"

    def start_dashboard(self) -> str:
        """`dashboard serve` on a free port, reading the cluster and the bot's state and config; write access with a
        random token kept in WORK/dashboard-token (0600)."""
        token = self.work / "dashboard-token"
        token.write_text(f"demo {secrets.token_urlsafe(24)}\n")
        token.chmod(0o600)
        self.dashboard = f"http://127.0.0.1:{free_port()}"
        argv = [str(VENV_BIN / "dashboard"), "serve", "--kubeconfig", self.kubeconfig, "--listen", self.dashboard[7:],
                "--imagebot-config", str(self.work / "imagebot.yaml"), "--token-file", str(token)]  # fmt: skip
        proc = self.spawn("dashboard", argv)

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{self.dashboard}/apps", timeout=2) as r:
                    return r.status == 200 and f"{APP_NS}/{KS}" in r.read().decode()
            except OSError:
                return False

        wait_until("the dashboard to list the demo's Kustomization", answers, proc=proc)
        print(f"dashboard: {self.dashboard}/", flush=True)
        return f"dashboard at {self.dashboard}/ lists {APP_NS}/{KS} (write token in {token})"

    def ci_publishes(self) -> str:
        before = git("-C", str(self.bare), "rev-parse", "main").strip()
        t0 = time.monotonic()
        publish(self.registry, self.bot, ["1.1.0", "1.2.0-rc.1"])

        def both_committed() -> bool:
            prod = git("-C", str(self.bare), "show", "main:clusters/demo/prod/deploy.yaml")
            dev = git("-C", str(self.bare), "show", "main:clusters/demo/dev/deploy.yaml")
            return "app:1.1.0 " in prod and "app:1.2.0-rc.1 " in dev

        wait_until("the bot to commit 1.1.0 (prod) and 1.2.0-rc.1 (dev)", both_committed)
        latency = time.monotonic() - t0

        def metric_commits() -> float:
            # the remote ref moves before the bot's push call returns and counts it: poll, don't read once
            with urllib.request.urlopen(f"http://{self.bot}/metrics", timeout=5) as r:
                metrics = r.read().decode()
            return next((float(ln.split()[-1]) for ln in metrics.splitlines() if ln.startswith("imagebot_commits_total ")), 0.0)

        try:
            wait_until("imagebot_commits_total to reach 2", lambda: metric_commits() >= 2, timeout=10)
        except DemoFailed:
            raise DemoFailed(f"/metrics counts {metric_commits():.0f} commits, expected 2") from None
        commits = metric_commits()
        self.bot_commit = git("-C", str(self.bare), "rev-parse", "main").strip()
        subjects = git("-C", str(self.bare), "log", "--format=%s", f"{before}..main").strip().splitlines()
        return f"webhook → commits in {latency:.2f}s ({commits:.0f} in /metrics): " + " | ".join(reversed(subjects))

    def controller_applies(self) -> str:
        wait_until(
            "the live images to change",
            lambda: self.image_of("app-prod").endswith(":1.1.0") and self.image_of("app-dev").endswith(":1.2.0-rc.1"),
        )
        sha = self.bot_commit
        wait_until(f"Kustomization {APP_NS}/{KS} Ready at the bot's commit main@sha1:{sha[:12]}…", lambda: self.applied(sha))
        # the controller re-applies every interval; a forced run now must change nothing either
        self.show([str(VENV_BIN / "reconciler"), "reconcile", KS, "-n", APP_NS, "--kubeconfig", self.kubeconfig])
        rises = {n: int(self.live(n)["metadata"]["generation"]) - g for n, g in self.generations.items()}
        if rises != {"app-prod": 1, "app-dev": 1}:
            raise DemoFailed(f"each Deployment's generation should rise once for its one Git change, rose by {rises}")
        self.show([self.kubectl_bin, "--kubeconfig", self.kubeconfig, "get", "kustomizations", "-A"])
        self.show([str(VENV_BIN / "reconciler"), "get", "-A", "--kubeconfig", self.kubeconfig])
        prod, dev = (self.image_of(n).rsplit("/", 1)[-1] for n in ("app-prod", "app-dev"))
        return f"live: app-prod {prod}, app-dev {dev}; generation +1 each; Ready at main@sha1:{sha[:12]}"

    def manual_change_healed(self) -> str:
        self.run_kubectl("-n", "demo", "scale", "deployment/app-prod", "--replicas=4")
        t0 = time.monotonic()
        wait_until("the drift to be healed (replicas back to 1)", lambda: self.live("app-prod")["spec"].get("replicas") == 1)
        healed = time.monotonic() - t0

        def attributed() -> str:
            lines = [
                ln for ln in self.controller_log.read_text(errors="replace").splitlines() if "drift on" in ln and "app-prod" in ln
            ]
            return lines[-1].split("drift on ", 1)[1] if lines else ""

        line = wait_until("the drift to be attributed in the controller's log", attributed, 5)

        def on_dashboard() -> bool:
            with urllib.request.urlopen(f"{self.dashboard}/apps/Kustomization/{APP_NS}/{KS}", timeout=5) as r:
                page = r.read().decode()
            return 'data-field="/spec/replicas" data-manager="kubectl" data-outcome="corrected"' in page

        wait_until("the dashboard to show the corrected drift with its attribution", on_dashboard, 10)
        return f"kubectl scale to 4 healed back to 1 in {healed:.2f}s; attributed: {line}; on the dashboard"

    # ------------------------------------------------------------------ lifecycle
    def _steps(self) -> None:
        self.step("0. start the real local parts", self.start_parts)
        self.step("1a. CI pushes demo/app:1.0.0", self.push_first)
        self.step("1b. declare the app: CRDs, GitRepository, Kustomization", self.declare_app)
        self.step("1c. the controller (leader-elected) applies the repo", self.start_controller)
        self.step("2a. the bot starts (imagebot serve)", self.start_bot)
        self.step("2c. the dashboard starts (dashboard serve)", self.start_dashboard)
        self.step("2b. CI pushes 1.1.0 + 1.2.0-rc.1 and posts the webhook", self.ci_publishes)
        self.step("3. the controller applies the new commit", self.controller_applies)
        self.step("4. a manual change is detected, attributed and healed", self.manual_change_healed)

    def _report_failure(self, exc: BaseException) -> None:
        if isinstance(exc, DemoFailed):
            what = str(exc)
        else:  # an error in the demo itself: say what and where, in one line, not a traceback
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
            what = f"{type(exc).__name__}: {exc}{where}"
        print(f"\n✗ DEMO FAILED: {what}", file=sys.stderr)
        for name in ("imagebot.log", "controller.log"):
            log = self.work / name
            if log.exists() and log.stat().st_size:
                print(f"--- {name} (tail)\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)

    def run(self) -> int:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            raise Interrupted(signum)

        handled = (signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, on_signal) for s in handled}
        code = 1
        try:
            with self.cleanup:
                self.work = Path(tempfile.mkdtemp(prefix="imagebot-demo-"))
                self.cleanup.callback(remove_work, self.work)
                (self.work / MARKER).write_text("a kept `make demo`; remove with: tests/demo.py --stop THIS-FOLDER\n")
                (self.work / "pids").mkdir()
                print(f"work folder: {self.work}", flush=True)
                try:
                    self._steps()
                    code = 0
                except KeyboardInterrupt:
                    print("\n✗ interrupted (SIGINT): stopping what the demo started", file=sys.stderr)
                    code = 130
                except Interrupted as exc:
                    print(f"\n✗ interrupted ({exc}): stopping what the demo started", file=sys.stderr)
                    code = 128 + exc.signum
                except Exception as exc:  # whatever broke, what was started must stop
                    self._report_failure(exc)
                finally:
                    # no second signal may cut the cleanup short: each stop is bounded (STOP_TIMEOUT)
                    for s in (*handled, signal.SIGINT):
                        signal.signal(s, signal.SIG_IGN)
                if code == 0:
                    self._summary()
                    if self.keep:
                        self._keep()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for s, h in previous.items():
                signal.signal(s, h)
        return code

    def _summary(self) -> None:
        print("\nstep                                                      took  what happened")
        for name, what, took in self.rows:
            print(f"{name:<56} {took:6.2f}s  {what[:110]}")

    def _keep(self) -> None:
        Kept(self.work, self.registry, self.bot, self.repo_url, self.bare, self.kubeconfig, self.kubectl_bin).save()
        self.cleanup.pop_all()  # success with --keep: nothing is undone
        fetched = shutil.which("kubectl") != self.kubectl_bin  # not the one on PATH: put it first there
        path = f"  export PATH={Path(self.kubectl_bin).parent}:$PATH\n" if fetched else ""
        cols = "NAME:.metadata.name,IMAGE:.spec.template.spec.containers[0].image,REPLICAS:.spec.replicas"
        print(
            f"\nleft running (--keep), everything in {self.work} (pids/, *.log). Explore:\n"
            f"{path}  export KUBECONFIG={self.kubeconfig}\n"
            f"  kubectl -n demo get deploy -o 'custom-columns={cols}'\n"
            f"  kubectl get kustomizations -A\n"
            f"  {VENV_BIN / 'reconciler'} get -A\n"
            f"  git -C {self.bare} log --oneline\n"
            f"  curl -s http://{self.bot}/metrics | grep imagebot_\n"
            f"  tail -f {self.work}/imagebot.log {self.work}/controller.log {self.work}/dashboard.log\n"
            f"  cat {self.work}/dashboard-token   # the dashboard's write token (NAME TOKEN): log in to act\n"
            f"  {sys.executable} {ROOT / 'tests/demo.py'} --push {self.work} 1.3.0   # CI pushes a tag + webhook\n"
            f"dashboard: {self.dashboard}/\n"
            f"stop: {stop_command(self.work)}",
            flush=True,
        )


def _kept(work: str) -> Path | None:
    path = Path(work).resolve()
    if not (path / MARKER).is_file():
        print(f"make demo: {work} is not a kept demo's folder (no {MARKER} in it): nothing done", file=sys.stderr)
        return None
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true", help="leave everything running, with the commands to explore it")
    mode.add_argument("--stop", metavar="DIR", help="stop every process of a kept demo by PID and remove DIR")
    mode.add_argument(
        "--push", nargs="+", metavar=("DIR", "TAG"), help="push demo/app:TAG... to a kept demo and post the webhook"
    )
    args = ap.parse_args(argv)
    if args.stop:
        work = _kept(args.stop)
        if work is None:
            return 2
        stop_all(work)
        print(f"stopped the demo in {work} and removed it", file=sys.stderr)
        return 0
    if args.push:
        work = _kept(args.push[0])
        if work is None or len(args.push) < 2:
            if work is not None:
                print("make demo: --push DIR TAG...: name at least one tag", file=sys.stderr)
            return 2
        kept = Kept.load(work)
        try:
            publish(kept.registry, kept.bot, args.push[1:])
        except (OSError, DemoFailed) as exc:
            print(f"make demo: --push: {exc}", file=sys.stderr)
            return 1
        print(f"pushed {', '.join(args.push[1:])} to {kept.registry}/demo/app and told the bot", file=sys.stderr)
        return 0
    return Demo(args.keep).run()


if __name__ == "__main__":
    sys.exit(main())
