"""One pass of the bot: scan → select per environment (with guards) → edit → commit / PR → record."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gitopskit.workspace import GitAuth, Identity, Workspace
from imagebot.config.model import Config, Environment, GitConfig, ImageConfig
from imagebot.errors import FAILURES, ExitCode, exit_code_of
from imagebot.forge.github import GitHubForge
from imagebot.gitops.writer import Delivery, Result, Status, deliver
from imagebot.refs import ImageRef
from imagebot.registry import Registries, RegistrySettings
from imagebot.registry.auth import Chain, CredentialSource, DockerConfigCredentials, EnvCredentials, FileCredentials
from imagebot.registry.scanner import Scanner
from imagebot.registry.state import ScanState
from imagebot.runtime.decide import decide
from imagebot.runtime.state import RuntimeState
from imagebot.update import EditRequest, ImageUpdate

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.scans = Counter("imagebot_scans_total", "Repository scans", ["result"], registry=r)
        self.tags = Gauge("imagebot_tags_seen", "Tags listed per repository", ["repository"], registry=r)
        self.selections = Counter("imagebot_selections_total", "Updates selected", ["image", "environment"], registry=r)
        self.commits = Counter("imagebot_commits_total", "Commits pushed", registry=r)
        self.prs = Counter("imagebot_pull_requests_total", "Pull requests opened or updated", ["action"], registry=r)
        self.errors = Counter("imagebot_errors_total", "Errors by kind", ["kind"], registry=r)
        self.scan_seconds = Histogram("imagebot_scan_seconds", "Scan duration per repository", registry=r)
        self.webhook_to_commit = Histogram(
            "imagebot_webhook_to_commit_seconds",
            "Webhook received to commit pushed",
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
            registry=r,
        )
        self.rate_remaining = Gauge(
            "imagebot_registry_ratelimit_remaining", "Registry rate-limit remaining", ["registry"], registry=r
        )


@dataclass
class PassReport:
    scanned: list[str] = field(default_factory=list)
    results: list[tuple[str, Result]] = field(default_factory=list)
    decisions: list[tuple[str, str, str]] = field(default_factory=list)  # image, env, reason
    errors: list[str] = field(default_factory=list)
    codes: list[ExitCode] = field(default_factory=list)  # one per error: what `run --once` exits with

    def fail(self, code: ExitCode, message: str) -> None:
        self.codes.append(code)
        self.errors.append(message)


def registries_for(cfg: Config) -> Registries:
    per_host: dict[str, RegistrySettings] = {}
    for r in cfg.registries:
        sources: list[CredentialSource] = []
        if r.credentials_env:
            sources.append(EnvCredentials(r.credentials_env))
        if r.credentials_file:
            sources.append(FileCredentials(r.credentials_file))
        sources.append(DockerConfigCredentials(r.docker_config))
        per_host[r.host] = RegistrySettings(
            r.host, r.ca_file, r.plain_http, Chain(tuple(sources)), r.requests_per_second, r.max_concurrency
        )
    return Registries(RegistrySettings(host="", credentials=DockerConfigCredentials()), per_host)


def _workspace(cfg: Config, g: GitConfig) -> Workspace:
    env = os.environ
    auth = GitAuth(
        env.get(g.username_env) if g.username_env else None,
        env.get(g.token_env) if g.token_env else None,
        g.ssh_key_file,
        g.known_hosts_file,
    )
    cache = cfg.cache_dir or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagebot" / "git"
    return Workspace(g.url, g.branch, cache, auth, Identity(g.author_name, g.author_email, g.signing_key_file))


class Runner:
    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.registries = registries_for(cfg)
        self.scan_state = ScanState(cfg.state_file)
        self.state = RuntimeState(cfg.state_file)
        self.scanner = Scanner(self.registries, self.scan_state, clock=clock)
        self._last_scan: dict[str, float] = {}
        self._workspaces: dict[str, Workspace] = {}
        self._lock = threading.Lock()  # one pass at a time: never two writers from one process

    def due(self, now: float) -> list[ImageConfig]:
        return [i for i in self.cfg.images if now - self._last_scan.get(i.name, -1e18) >= i.interval_seconds]

    def run_pass(self, only: Iterable[str] | None = None, received: float | None = None) -> PassReport:
        with self._lock:
            return self._pass(only, received)

    def _pass(self, only: Iterable[str] | None, received: float | None) -> PassReport:
        now = self.clock()
        report = PassReport()
        wanted = set(only) if only is not None else None
        images = (
            [i for i in self.cfg.images if wanted is None or i.repository.canonical_name in wanted]
            if wanted is not None
            else self.due(now)
        )
        scans = self.scanner.scan(i.repository for i in images)
        for repo, res in scans.items():
            report.scanned.append(repo)
            self.metrics.scans.labels("ok" if res.ok else "error").inc()
            self.metrics.scan_seconds.observe(res.seconds)
            if res.ok:
                self.metrics.tags.labels(repo).set(len(res.tags))
            else:
                report.fail(ExitCode.REGISTRY, res.error or "")
                self.metrics.errors.labels("registry").inc()
        for host in {i.repository.canonical_registry for i in images}:
            remaining = self.registries.client(host).rate_limit
            value = remaining.get("ratelimit-remaining") or remaining.get("x-ratelimit-remaining")
            if value is not None:
                with contextlib.suppress(ValueError):
                    self.metrics.rate_remaining.labels(host).set(float(value.split(";")[0]))
        groups: dict[tuple[str, str, str, str, str, str], list[tuple[ImageConfig, Environment, ImageRef]]] = {}
        for image in images:
            found = scans.get(image.repository.canonical_name)
            if found is None or not found.ok:
                continue
            res = found
            self._last_scan[image.name] = now
            first_seen = self.scan_state.known_tags(image.repository.canonical_name)
            peers = {e.name: c for e in image.environments if (c := self.state.current(image.name, e.name)) is not None}
            for env in self._ordered(image.environments):
                current = self.state.current(image.name, env.name)
                d = decide(env, list(res.tags), first_seen, now, current, peers)
                report.decisions.append((image.name, env.name, d.reason))
                self.state.record(image.name, env.name, reason=d.reason, pending=d.pending, now=now)
                if d.tag is None:
                    continue
                digest = d.digest
                if env.digest and digest is None:
                    client = self.registries.client(image.repository.canonical_registry)
                    digest = client.manifest_digest(image.repository.canonical_path, d.tag)
                new = image.repository.with_version(d.tag, digest)
                t = env.target
                key = (t.git, t.path, str(t.mode), t.push_branch or "", env.name, t.group)
                groups.setdefault(key, []).append((image, env, new))
                self.metrics.selections.labels(image.name, env.name).inc()
        for key, items in sorted(groups.items()):
            self._deliver(key, items, report, received)
        return report

    @staticmethod
    def _ordered(envs: tuple[Environment, ...]) -> list[Environment]:
        """Sources of promotions first, so a promotion sees this pass's state of its source."""
        return sorted(envs, key=lambda e: e.promote_from is not None)

    def _deliver(
        self,
        key: tuple[str, str, str, str, str, str],
        items: list[tuple[ImageConfig, Environment, ImageRef]],
        report: PassReport,
        received: float | None,
    ) -> None:
        git_name, path, _, _, env_name, group = key
        g = self.cfg.git_by_name(git_name)
        target = items[0][1].target
        policies = {e.setter: ref for _, e, ref in items if e.setter}
        updates = tuple(ImageUpdate(i.repository, ref) for i, e, ref in items if not e.setter)
        request = EditRequest(policies=policies, images=updates)
        ws = self._workspaces.setdefault(g.name, _workspace(self.cfg, g))
        forge = None
        if target.mode.value == "pull-request":
            token = os.environ.get(g.github_token_env or "IMAGEBOT_GITHUB_TOKEN", "")
            repo = g.github_repo or ""
            forge = GitHubForge(repo, token, g.github_api, throttle=os.environ.get("IMAGEBOT_GITHUB_THROTTLE", "1") != "0")
        delivery = Delivery(
            target.mode,
            g.branch,
            path,
            target.push_branch,
            env_name,
            group,
            target.labels,
            target.reviewers,
            templates=g.templates,
        )
        try:
            result = deliver(ws, delivery, request, forge)
        except FAILURES as exc:
            report.fail(exit_code_of(exc), str(exc))
            self.metrics.errors.labels(type(exc).__name__).inc()
            log.error("delivery to %s (%s) failed: %s", g.name, env_name, exc)
            return
        report.results.append((env_name, result))
        now = self.clock()
        if result.status in (Status.PUSHED, Status.PR_OPENED, Status.PR_UPDATED, Status.NO_CHANGE, Status.PR_UNCHANGED):
            for image, env, ref in items:
                pr = result.pr.url if result.pr else None
                # NO_CHANGE means Git already holds this value: it is current all the same
                self.state.record(
                    image.name,
                    env.name,
                    reason=f"{result.status}: {ref.identifier}",
                    pending=None,
                    now=now,
                    tag=ref.tag,
                    digest=ref.digest,
                    commit=result.commit,
                    pr=pr,
                )
        if result.status is Status.PUSHED:
            self.metrics.commits.inc()
            if received is not None:
                self.metrics.webhook_to_commit.observe(time.monotonic() - received)
        elif result.status in (Status.PR_OPENED, Status.PR_UPDATED):
            self.metrics.prs.labels(str(result.status)).inc()
        log.info("%s %s → %s: %s %s", g.name, env_name, target.mode, result.status, result.commit or "")
