"""One pass of the bot: scan → select per environment (with guards) → edit → commit / PR → record."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gitopskit.notify import Emitter, Event, EventType, FailureTracker, NullEmitter
from gitopskit.workspace import GitAuth, Identity, SSHSigningKey, Workspace, cache_key, flux_git_auth, safe_url
from imagebot.config.model import Config, Environment, GitConfig, ImageConfig, Purpose, VerifySpec
from imagebot.errors import FAILURES, ClusterOnlyError, ExitCode, exit_code_of
from imagebot.forge.base import Forge
from imagebot.gitops.writer import Delivery, Result, Status, deliver
from imagebot.refs import ImageRef
from imagebot.registry import Registries, RegistrySettings
from imagebot.registry.auth import (
    Chain,
    ClusterOnlyCredentials,
    Credentials,
    CredentialSource,
    DockerConfigCredentials,
    EnvCredentials,
    FileCredentials,
    StaticCredentials,
)
from imagebot.registry.provenance import ProvenanceReader
from imagebot.registry.scanner import Scanner, ScanResult
from imagebot.registry.state import ScanState
from imagebot.runtime.backoff import Backoff, Retry
from imagebot.runtime.decide import Current, Decision, decide
from imagebot.runtime.state import RuntimeState
from imagebot.runtime.why import why_of
from imagebot.update import EditRequest, ImageUpdate
from imagebot.update.model import Passed, Provenance, Why

if TYPE_CHECKING:
    from imagebot.registry.signatures import SignatureChecker
    from imagebot.verify import PublicKey, Verification

log = logging.getLogger(__name__)
# git's words for a remote that wants credentials it was not given (HTTP 401/403, prompts disabled, SSH keys)
_AUTH_REFUSED = re.compile(r"(?i)authentication failed|could not read (?:username|password)|\b40[13]\b|permission denied")


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
        self.unverified = Counter(
            "imagebot_signature_rejections_total",
            "Allowed tags passed over because their cosign signature did not verify (per pass)",
            ["image", "reason"],
            registry=r,
        )
        self.signature_checks = Counter(
            "imagebot_signature_checks_total", "Signature verdicts by where they came from", ["source"], registry=r
        )
        self.rate_remaining = Gauge(
            "imagebot_registry_ratelimit_remaining", "Registry rate-limit remaining", ["registry"], registry=r
        )


@dataclass
class PassReport:
    scanned: list[str] = field(default_factory=list)
    results: list[tuple[str, Result]] = field(default_factory=list)
    decisions: list[tuple[str, str, str]] = field(default_factory=list)  # image, env, reason
    _failures: list[tuple[tuple[int, int], ExitCode, str]] = field(default_factory=list)

    def fail(self, code: ExitCode, message: str, order: tuple[int, int] = (1 << 30, 0)) -> None:
        """``order`` (image, environment position in the config) makes "the first failure" not
        depend on which registry answered first."""
        self._failures.append((order, code, message))

    def _sorted(self) -> list[tuple[tuple[int, int], ExitCode, str]]:
        return sorted(self._failures, key=lambda f: f[0])

    @property
    def errors(self) -> list[str]:
        return [m for _, _, m in self._sorted()]

    @property
    def codes(self) -> list[ExitCode]:
        """One per error, in config order: ``run --once`` exits with the first."""
        return [c for _, c, _ in self._sorted()]


GroupKey = tuple[str, str, str, str, str, str]  # git, path, mode, push branch, environment, group


def group_of(env: Environment) -> GroupKey:
    t = env.target
    return (t.git, t.path, str(t.mode), t.push_branch or "", env.name, t.group)


@dataclass(frozen=True, slots=True)
class Item:
    """One image's new reference for one environment, bound for that environment's group."""

    image: ImageConfig
    env: Environment
    ref: ImageRef
    note: str = ""  # newer tags the signature gate passed over, and why (kept in status after delivery)
    why: Why | None = None  # the facts the pull request body and commit trailers explain

    @property
    def subject(self) -> str:
        """What the edit reports it by: the setter REF, or the repository as configured."""
        return self.env.setter or self.image.repository.name


@dataclass(frozen=True, slots=True)
class Failure:
    env: str  # "" when the whole image failed (its scan)
    code: ExitCode
    kind: str  # the errors metric's label
    message: str


@dataclass
class Prepared:
    """What one image's scan, decisions and digest lookups produced (a worker's answer to the pass)."""

    image: ImageConfig
    scan: ScanResult | None = None
    decisions: list[tuple[Environment, Decision]] = field(default_factory=list)
    waiting: list[tuple[Environment, Retry]] = field(default_factory=list)  # environments backing off
    items: list[Item] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass
class Signed:
    """What the signature gate learnt while deciding one environment (filled in by ``_gate``)."""

    passed_over: list[Passed] = field(default_factory=list)
    signature: str = ""


def _signature(verdict: Verification | None) -> str:
    if verdict is None:
        return "verified"
    return f"verified ({verdict.detail})" if verdict.detail else "verified"


def _utc(t: float) -> str:
    """An absolute time for status (a relative one would be stale when read)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FAILURES) else f"{type(exc).__name__}: {exc}"


def registries_for(cfg: Config) -> Registries:
    per_host: dict[str, RegistrySettings] = {}
    for r in cfg.registries:
        sources: list[CredentialSource] = []
        if r.credentials_env:
            sources.append(EnvCredentials(r.credentials_env))
        if r.credentials_file:
            sources.append(FileCredentials(r.credentials_file))
        if r.credentials is not None:  # a Flux secretRef / image pull Secret
            sources.append(StaticCredentials(Credentials(r.credentials.username, r.credentials.password)))
        sources.append(DockerConfigCredentials(r.docker_config))  # also file mode's local alternative to a secretRef
        auth = [u for u in r.unresolved if u.purpose in (Purpose.REGISTRY_AUTH, Purpose.PULL_SECRETS)]
        if auth:
            sources.append(ClusterOnlyCredentials(auth[0].needed(f"registry {r.host} asked for credentials")))
        tls = [u for u in r.unresolved if u.purpose is Purpose.REGISTRY_TLS]
        per_host[r.host] = RegistrySettings(
            r.host,
            r.ca_file,
            r.plain_http,
            Chain(tuple(sources)),
            r.requests_per_second,
            r.max_concurrency,
            tls=r.tls,
            tls_unresolved=tls[0].needed(f"the TLS certificate of registry {r.host} did not verify") if tls else "",
        )
    return Registries(RegistrySettings(host="", credentials=DockerConfigCredentials()), per_host)


def flux_delivery(g: GitConfig) -> dict[str, Any]:
    """What an ImageUpdateAutomation adds to a delivery: its messageTemplate, and the refusal to commit when
    its signing key is a Secret file mode could not read (Flux signs every commit; an unsigned one would differ)."""
    if g.flux is None:
        return {}
    f = g.flux
    from imagebot.gitops.gotemplate import GoMessage  # a Flux messageTemplate only

    out: dict[str, Any] = {"go_message": GoMessage(f.namespace, f.name, f.message_template, f.values, f.api_version)}
    unsigned = [u for u in g.unresolved if u.purpose is Purpose.SIGNING]
    if unsigned:
        out["refuse_commit"] = unsigned[0].needed("a commit must be signed") + "; nothing committed"
    return out


def _identity(g: GitConfig) -> Identity:
    """The commit identity; with a Flux signingKey (gpg), every commit is signed with the key in memory."""
    key = g.flux.signing_key if g.flux is not None else None
    if key is None or g.flux is None:
        return Identity(g.author_name, g.author_email, g.signing_key_file)
    origin = f"ImageUpdateAutomation {g.flux.namespace}/{g.flux.name}: spec.git.commit.signingKey"
    from gitopskit.fluxsecrets import SigningKeyType
    from gitopskit.openpgp import OpenPGPKey

    if key.type is SigningKeyType.SSH:
        return Identity(g.author_name, g.author_email, ssh=SSHSigningKey(key.key, key.passphrase, origin))
    return Identity(g.author_name, g.author_email, openpgp=OpenPGPKey(key.key, key.passphrase, origin))


def _read_keys(spec: VerifySpec) -> tuple[PublicKey, ...]:
    from imagebot.verify import VerifyError, load_keys, secret_keys

    keys: list[PublicKey] = []
    for path in spec.keys:
        try:
            keys.extend(load_keys(path.read_bytes(), str(path)))
        except OSError as exc:
            raise VerifyError(f"verify.cosign key {path}: {exc.strerror or exc}") from None
    if spec.pems and spec.secret is not None:  # a loaded Secret's *.pub entries (checked when the files were loaded)
        keys.extend(secret_keys(dict(spec.pems), f"{spec.secret.namespace}/{spec.secret.name}"))
    return tuple(keys)


def _workspace(cfg: Config, g: GitConfig) -> Workspace:
    env = os.environ
    auth = GitAuth(
        env.get(g.username_env) if g.username_env else None,
        env.get(g.token_env) if g.token_env else None,
        g.ssh_key_file,
        g.known_hosts_file,
    )
    cache = cfg.cache_dir or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagebot" / "git"
    if g.credentials is not None:  # a Flux GitRepository's secretRef
        auth = flux_git_auth(g.credentials, cache / "secrets" / cache_key(g.url, g.name))
    return Workspace(g.url, g.branch, cache, auth, _identity(g))


class Runner:
    """Passes over the configured images. Each image is its own key: its scan, decisions and
    digest lookups run on a small worker pool, a failure is recorded against that image (or image
    and environment), counted and backed off, and every other key carries on; a group's commit /
    PR goes out as soon as the images feeding it are ready, so one slow registry holds up only the
    groups its own image feeds (each registry call is bounded by the client's deadline)."""

    def __init__(
        self,
        cfg: Config,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        *,
        workers: int = 8,
        backoff: Backoff | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.registries = registries_for(cfg)
        self.scan_state = ScanState(cfg.state_file)
        self._provenance = ProvenanceReader(self.scan_state)
        self.state = RuntimeState(cfg.state_file)
        self.scanner = Scanner(self.registries, self.scan_state, clock=clock)
        self.workers = max(1, workers)
        self.backoff = backoff or Backoff()
        self._last_scan: dict[str, float] = {}
        self._workspaces: dict[str, Workspace] = {}
        self._lock = threading.Lock()  # one pass at a time: never two writers from one process
        self.fence: Callable[[], None] = lambda: None  # before every push / PR call (serve --leader-elect)
        # one checker per key set, keys read now: an unreadable or unsupported key is exit 2 at start
        from imagebot.registry.signatures import SignatureChecker  # cosign's formats: only when a policy verifies

        self._checkers = {
            (spec.keys, spec.pems): SignatureChecker(self.registries, _read_keys(spec), self.scan_state, clock)
            for spec in {e.verify for i in cfg.images for e in i.environments if e.verify is not None}
        }
        self.notifier: Emitter = NullEmitter()  # notifications (commands.py starts one when the config has sinks)
        self.peers = FailureTracker(cfg.notifications.failing_after)  # registries and git remotes failing for long
        self._announced: dict[tuple[str, str], str] = {}  # (image, env) → the soaking tag last announced
        self._proposed: dict[tuple[str, str], str] = {}  # (image, env) → the tag its pull request last proposed
        self.discovery = None
        if cfg.discover:  # imported only then: it builds on this module
            from imagebot.runtime.discovery import Discovery

            self.discovery = Discovery(self)

    def _next(self, image: ImageConfig) -> float:
        """When ``image`` should next be processed: its interval after the last good scan, or earlier
        for an environment's retry — but never while its scan itself is backing off."""
        retries = [r.at for e in image.environments if (r := self.backoff.get((image.name, e.name))) is not None]
        when = min([self._last_scan.get(image.name, -1e18) + image.interval_seconds, *retries])
        blocked = self.backoff.get((image.name, ""))
        return when if blocked is None else max(when, blocked.at)

    def due(self, now: float) -> list[ImageConfig]:
        return [i for i in self.cfg.images if self._next(i) <= now]

    def until_next(self, now: float) -> float:
        """Seconds until an image is due or a failed key may be retried (for the loops' sleep)."""
        found = [self.discovery.next_at(e) for e in self.discovery.entries] if self.discovery is not None else []
        return max(0.0, min((*(self._next(i) for i in self.cfg.images), *found), default=now + 3600.0) - now)

    def run_pass(self, only: Iterable[str] | None = None, received: float | None = None) -> PassReport:
        """Due images, or exactly the repositories in ``only`` (a webhook: new tags are there now,
        so backoff does not apply)."""
        with self._lock, self.state.deferred():  # the pass's records: a few transactions, not one each
            return self._pass(only, received)

    def _pass(self, only: Iterable[str] | None, received: float | None) -> PassReport:
        now = self.clock()
        report = PassReport()
        wanted = set(only) if only is not None else None
        images = self.due(now) if wanted is None else [i for i in self.cfg.images if i.repository.canonical_name in wanted]
        order = {image.name: n for n, image in enumerate(self.cfg.images)}
        feeds = {image.name: sorted({group_of(e) for e in image.environments}) for image in images}
        unready: dict[GroupKey, set[str]] = {}
        for name, keys in feeds.items():
            for key in keys:
                unready.setdefault(key, set()).add(name)
        groups: dict[GroupKey, list[Item]] = {}
        queues: dict[str, deque[ImageConfig]] = {}
        for image in images:
            queues.setdefault(image.repository.canonical_registry, deque()).append(image)
        busy: dict[str, int] = dict.fromkeys(queues, 0)
        per_host = max(1, self.workers * 3 // 4)  # one slow registry never takes every worker
        running: dict[Future[Prepared], str] = {}
        prefetching: dict[str, threading.Thread | None] = {}
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="image") as pool:
                while queues or running:
                    for host in list(queues):  # round-robin over registries, each under its own cap
                        queue = queues[host]
                        while queue and busy[host] < per_host and len(running) < self.workers:
                            image = queue.popleft()
                            running[pool.submit(self._prepare, image, now, self._waiting(image, now, wanted is None))] = host
                            busy[host] += 1
                        if not queue:
                            del queues[host]
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        busy[running.pop(future)] -= 1
                        prepared = future.result()  # _prepare answers every failure; it does not raise
                        self._absorb(prepared, report, order, now)
                        for item in prepared.items:
                            groups.setdefault(group_of(item.env), []).append(item)
                            self._prefetch(item, prefetching)
                        for key in feeds[prepared.image.name]:
                            unready[key].discard(prepared.image.name)
                            if not unready[key] and key in groups:
                                self._deliver(key, groups.pop(key), report, order, received)
                                self.state.flush()  # what the branch now holds is recorded before anything else
        finally:
            for thread in prefetching.values():  # never left running past the pass (it holds the workspace)
                if thread is not None:
                    thread.join()
        if self.discovery is not None:  # after the images: their deliveries never wait on a tree's listings
            self.discovery.run(self.discovery.due(now, wanted), report, now, wanted)
        self._rate_limit_metrics({i.repository.canonical_registry for i in images})
        return report

    def _forge(self, g: GitConfig) -> Forge:
        from imagebot.forge.github import GitHubForge  # PyGithub costs ~0.3 s to import: only when a PR is due

        token = os.environ.get(g.github_token_env or "IMAGEBOT_GITHUB_TOKEN", "")
        throttle = os.environ.get("IMAGEBOT_GITHUB_THROTTLE", "1") != "0"
        return GitHubForge(g.github_repo or "", token, g.github_api, throttle=throttle)

    def _workspace_for(self, g: GitConfig) -> Workspace:
        ws = self._workspaces.get(g.name)
        if ws is None:
            ws = self._workspaces[g.name] = _workspace(self.cfg, g)
        return ws

    def _prefetch(self, item: Item, started: dict[str, threading.Thread | None]) -> None:
        """Clone a repository not cloned yet in the background as soon as an update for it is known, so
        the clone overlaps the rest of the scan instead of following it (a cold process's first pass)."""
        g = self.cfg.git_by_name(item.env.target.git)
        if g.name in started:
            return
        try:
            ws = self._workspace_for(g)
        except Exception:  # e.g. credentials only the cluster has: the delivery reports it
            started[g.name] = None
            return
        if ws.cloned:
            started[g.name] = None  # already cloned: the delivery's own fetch is all it needs
            return

        def fetch() -> None:
            try:
                ws.prefetch(g.branch)
            except Exception as exc:  # the delivery syncs again and reports its own failure
                log.debug("prefetch of %s failed: %s", g.name, exc)

        thread = started[g.name] = threading.Thread(target=fetch, name=f"prefetch-{g.name}", daemon=True)
        thread.start()

    def _waiting(self, image: ImageConfig, now: float, honour: bool) -> dict[str, Retry]:
        """The environments of ``image`` still backing off (none when a webhook asked for it)."""
        if not honour:
            return {}
        return {e.name: r for e in image.environments if (r := self.backoff.waiting((image.name, e.name), now)) is not None}

    def _prepare(self, image: ImageConfig, now: float, waiting: dict[str, Retry]) -> Prepared:
        """Scan one image and decide each environment (a worker thread; reads state, writes nothing).

        A promotion decides from its source's state as recorded before this pass — every environment
        of an image is decided before any of them is delivered — so a tag its source receives in this
        pass is promoted in a later pass, once it has soaked.
        """
        out = Prepared(image)
        repo = image.repository
        code = ExitCode.REGISTRY
        try:
            out.scan = self.scanner.scan_one(repo)
        except Exception as exc:  # e.g. an OSError for an unreadable caFile: this image's failure only
            log.warning("scan of %s failed: %s", repo.canonical_name, _describe(exc))
            if isinstance(exc, ClusterOnlyError):  # the message names the Flux object and field: exit 2
                code, error = ExitCode.USAGE, str(exc)
            else:
                error = f"registry {repo.canonical_registry}: {_describe(exc)}"
            out.scan = ScanResult(repo.canonical_name, (), (), error, 0.0)
        if not out.scan.ok:
            out.failures.append(Failure("", code, code.name.lower() if code is ExitCode.USAGE else "registry",
                                        out.scan.error or "scan failed"))  # fmt: skip
            return out
        try:
            first_seen = out.scan.first_seen
            if first_seen is None:
                first_seen = self.scan_state.known_tags(repo.canonical_name)
            peers = {e.name: c for e in image.environments if (c := self.state.current(image.name, e.name)) is not None}
            overrides = self.state.overrides(image.name)  # operators' holds and approvals, read here: decide stays pure
        except Exception as exc:
            log.exception("reading the state for %s failed", image.name)
            out.failures.append(Failure("", ExitCode.USAGE, "state", f"{image.name}: state unreadable: {_describe(exc)}"))
            return out
        for env in image.environments:
            retry = waiting.get(env.name)
            if retry is not None:
                out.waiting.append((env, retry))
                continue
            try:
                d = decide(env, list(out.scan.tags), first_seen, now, peers.get(env.name), peers, overrides.get(env.name))
                digest, note, signed = d.digest, "", Signed()
                if env.verify is not None and env.promote_from is None and d.tag is not None:
                    d, verified, note = self._gate(image, env, env.verify, out.scan.tags, first_seen, now, peers, signed)
                    digest = verified if env.digest else None  # pinned: exactly the digest whose signature verified
                elif env.verify is not None and d.tag is not None:
                    d, digest = self._gate_promotion(image, env, env.verify, d, out.scan.tags, signed)
                out.decisions.append((env, d))
                if d.tag is None:
                    continue
                if env.digest and digest is None:
                    client = self.registries.client(repo.canonical_registry)
                    digest = client.manifest_digest(repo.canonical_path, d.tag)
                current = peers.get(env.name)
                new_prov, old_prov = self._provenance_of(repo, d.tag, digest, current)
                why = why_of(env, d, out.scan.tags, current, gate_passed_over=tuple(signed.passed_over),
                             signature=signed.signature, new_digest=digest, new=new_prov, old=old_prov)  # fmt: skip
                out.items.append(Item(image, env, repo.with_version(d.tag, digest), note, why))
            except Exception as exc:
                code = exit_code_of(exc) if isinstance(exc, FAILURES) else ExitCode.REGISTRY
                if not isinstance(exc, FAILURES):
                    log.exception("%s %s: unexpected failure", image.name, env.name)
                message = f"{image.name} {env.name}: {_describe(exc)}"
                out.failures.append(Failure(env.name, code, code.name.lower(), message))
        return out

    def _provenance_of(
        self, repo: ImageRef, tag: str, digest: str | None, current: Current | None
    ) -> tuple[Provenance, Provenance | None]:
        """The proposed image's annotations and the current one's (for the compare link): read only for a tag
        being proposed, cached per digest, a failure reported in the body rather than raised."""
        client = self.registries.client(repo.canonical_registry)
        new = self._provenance.read(client, repo.canonical_name, repo.canonical_path, digest or tag)
        old_ref = (current.digest or current.tag) if current is not None else None
        old = self._provenance.read(client, repo.canonical_name, repo.canonical_path, old_ref) if old_ref else None
        return new, (old if old is not None and not old.unavailable else None)

    def _gate(
        self,
        image: ImageConfig,
        env: Environment,
        spec: VerifySpec,
        tags: tuple[str, ...],
        first_seen: Mapping[str, float],
        now: float,
        peers: dict[str, Current],
        signed: Signed,
    ) -> tuple[Decision, str | None, str]:
        """The decision among signed tags only: the newest allowed that verifies, its verified digest, and
        the newer tags passed over with their reasons.

        A promotion is not gated here: it takes the tag and digest its source environment selected."""
        checker = self._checker(spec)
        digests: dict[str, str] = {}
        current = peers.get(env.name)

        def select(candidates: list[str]) -> str | None:
            return decide(env, candidates, first_seen, now, current, peers).tag

        verdicts: dict[str, Verification] = {}

        def check(tag: str) -> tuple[Verification, bool]:
            digest, verdict, fetched = checker.check(image.repository, tag, tags)
            self.metrics.signature_checks.labels("registry" if fetched else "cache").inc()
            digests[tag] = digest
            verdicts[tag] = verdict
            return verdict, fetched

        from imagebot.verify import first_verified

        gated = first_verified(select, tags, check, spec.max_per_pass)
        for _, verdict in gated.rejected:
            self.metrics.unverified.labels(image.name, str(verdict.status)).inc()
        passed_over = {t for t, _ in gated.rejected}
        signed.passed_over = [Passed(t, v.describe()) for t, v in gated.rejected]
        if gated.winner is not None:
            signed.signature = _signature(verdicts.get(gated.winner))
        d = decide(env, [t for t in tags if t not in passed_over], first_seen, now, current, peers)
        note = gated.reasons()
        why = f"; {note}" if note else ""
        if gated.winner is None:
            if gated.exhausted:
                reason = f"no signed tag within {spec.max_per_pass} signature checks this pass (the next pass goes on)"
                return Decision(None, None, reason + why, d.pending, d.remaining), None, note
            return replace(d, reason=d.reason + why), None, note
        return replace(d, reason=f"{d.reason} (signature verified){why}"), digests[gated.winner], note

    def _checker(self, spec: VerifySpec) -> SignatureChecker:
        """The gate's checker; a ``secretRef`` fails here — when a tag must be verified, not before (the cluster
        holds the Secret, and ``config validate`` warned)."""
        if spec.unresolved:
            raise ClusterOnlyError(spec.unresolved)
        return self._checkers[(spec.keys, spec.pems)]

    def _gate_promotion(
        self, image: ImageConfig, env: Environment, spec: VerifySpec, d: Decision, tags: tuple[str, ...], signed: Signed
    ) -> tuple[Decision, str | None]:
        """A promotion into a gated environment: the source's digest (or, unpinned, the tag's now) must verify
        with this environment's keys, else nothing is promoted — a source without a gate passes no unsigned tag on."""
        assert d.tag is not None
        checker = self._checker(spec)
        if d.digest is not None:
            digest = d.digest
            verdict, fetched = checker.check_digest(image.repository, digest, tags)
        else:
            digest, verdict, fetched = checker.check(image.repository, d.tag, tags)
        self.metrics.signature_checks.labels("registry" if fetched else "cache").inc()
        if not verdict.ok:
            self.metrics.unverified.labels(image.name, str(verdict.status)).inc()
            return Decision(None, None, f"{d.reason}, held: {d.tag}: {verdict.describe()}"), None
        signed.signature = _signature(verdict)
        return replace(d, reason=f"{d.reason} (signature verified)"), d.digest or (digest if env.digest else None)

    def _absorb(self, p: Prepared, report: PassReport, order: dict[str, int], now: float) -> None:
        """Account for one image's preparation: metrics, state, failures and their backoff."""
        name = p.image.name
        if p.scan is not None:
            report.scanned.append(p.scan.repository)
            self.metrics.scans.labels("ok" if p.scan.ok else "error").inc()
            self.metrics.scan_seconds.observe(p.scan.seconds)
            if p.scan.ok:
                self.metrics.tags.labels(p.scan.repository).set(len(p.scan.tags))
                self._last_scan[name] = now
                self.backoff.succeeded((name, ""))
                self._peer(f"registry {p.image.repository.canonical_registry}", now, None)
            else:
                self._peer(f"registry {p.image.repository.canonical_registry}", now, p.scan.error or "scan failed")
        for env, d in p.decisions:
            report.decisions.append((name, env.name, d.reason))
            self.state.record(name, env.name, reason=d.reason, pending=d.pending, now=now)
            if d.tag is None:
                self.backoff.succeeded((name, env.name))
            if env.promote_from and d.tag is None and d.pending and self._announced.get((name, env.name)) != d.pending:
                self._announced[(name, env.name)] = d.pending  # once per soaking tag, not once per pass
                left = f"; promoted in {d.remaining / 3600:.1f}h" if d.remaining > 0 else ""
                message = f"{d.pending} → {env.name}: {d.reason}{left}"
                self._emit(EventType.PROMOTION_WAITING, name, message, env.name, tag=d.pending)
        for env, retry in p.waiting:
            report.decisions.append((name, env.name, f"backing off after {retry.failures} failure(s): {retry.error}"))
        for item in p.items:
            self.metrics.selections.labels(name, item.env.name).inc()
        positions = {e.name: n for n, e in enumerate(p.image.environments)}
        for f in p.failures:
            envs = [f.env] if f.env else [e.name for e in p.image.environments]
            self._failed(report, (order.get(name, 1 << 30), positions.get(f.env, 0)), name, envs, f, now)

    def _failed(self, report: PassReport, order: tuple[int, int], image: str, envs: list[str], f: Failure, now: float) -> None:
        report.fail(f.code, f.message, order)
        self.metrics.errors.labels(f.kind).inc()
        retry = self.backoff.failed((image, f.env), now, f.message)
        for env in envs:
            self.state.note(image, env, reason=f"failed ({retry.failures}x, next attempt {_utc(retry.at)}): {f.message}", now=now)
        log.error("%s (failure %d, next attempt in %.0fs)", f.message, retry.failures, retry.at - now)

    # ------------------------------------------------------------------ notifications
    def _emit(self, kind: EventType, image: str, message: str, env: str, **details: str | None) -> None:
        facts = (("environment", env), *((k, v) for k, v in details.items() if v))
        self.notifier.emit(Event(kind, image, message, details=facts))

    def _peer(self, peer: str, now: float, error: str | None) -> None:
        event = self.peers.succeeded(peer, now) if error is None else self.peers.failed(peer, now, error)
        if event is not None:
            self.notifier.emit(event)

    def _delivered(self, item: Item, result: Result, env: str, git: str) -> None:
        """What one item's delivery is news of: a commit, a pull request opened, updated or superseded, a promotion
        (pushed, or proposed in a pull request: then it is current once merged)."""
        name, ref, key = item.image.name, item.ref, (item.image.name, item.env.name)
        facts = {"tag": ref.tag, "digest": ref.digest, "commit": result.commit, "git": git, "branch": result.branch}
        pr = result.pr.url if result.pr is not None else None
        if result.status is Status.PUSHED:
            self._emit(EventType.COMMIT_PUSHED, name, f"{ref.identifier} pushed to {env} ({result.branch})", env, **facts)
        elif result.status in (Status.PR_OPENED, Status.PR_UPDATED) and pr is not None:
            before = self._proposed.get(key)
            self._proposed[key] = ref.tag or ""
            kind = EventType.PR_OPENED if result.status is Status.PR_OPENED else EventType.PR_UPDATED
            message = f"{ref.identifier} for {env} in {pr}"
            if kind is EventType.PR_UPDATED and before is not None and before != ref.tag:
                kind, message = EventType.PR_SUPERSEDED, f"{pr} now proposes {ref.tag} for {env} (was {before})"
            self._emit(kind, name, message, env, pr=pr, **facts)
        else:
            return
        if item.env.promote_from:
            self._announced.pop(key, None)
            message = f"{ref.tag} promoted from {item.env.promote_from} to {env}" + (f" in {pr}" if pr else "")
            self._emit(EventType.PROMOTION_DONE, name, message, env, pr=pr, **facts)

    def _rate_limit_metrics(self, hosts: set[str]) -> None:
        for host in hosts:
            try:
                remaining = self.registries.client(host).rate_limit
            except Exception:  # a host whose client cannot be built already failed its images' scans
                continue
            value = remaining.get("ratelimit-remaining") or remaining.get("x-ratelimit-remaining")
            if value is not None:
                with contextlib.suppress(ValueError):
                    self.metrics.rate_remaining.labels(host).set(float(value.split(";")[0]))

    def _deliver(
        self, key: GroupKey, items: list[Item], report: PassReport, order: dict[str, int], received: float | None
    ) -> None:
        git_name, path, _, _, env_name, group = key
        g = self.cfg.git_by_name(git_name)
        target = items[0].env.target
        policies = {i.env.setter: i.ref for i in items if i.env.setter}
        updates = tuple(ImageUpdate(i.image.repository, i.ref) for i in items if not i.env.setter)
        request = EditRequest(policies=policies, images=updates)
        forge = self._forge(g) if target.mode.value == "pull-request" else None
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
            why={i.subject: i.why for i in items if i.why is not None},
            **flux_delivery(g),
        )

        def failed(item: Item, code: ExitCode, message: str) -> None:
            where = (order.get(item.image.name, 1 << 30), [e.name for e in item.image.environments].index(item.env.name))
            f = Failure(item.env.name, code, code.name.lower(), message)
            self._failed(report, where, item.image.name, [item.env.name], f, self.clock())

        try:
            ws = self._workspace_for(g)
            ws.fence = self.fence
            result = deliver(ws, delivery, request, forge)
        except Exception as exc:  # this group's failure: the other groups are still delivered
            code = exit_code_of(exc) if isinstance(exc, FAILURES) else ExitCode.GIT
            if code is ExitCode.GIT:
                self._peer(f"git {g.name}", self.clock(), _describe(exc))
            if not isinstance(exc, FAILURES):
                log.exception("delivery to %s (%s) failed", g.name, env_name)
            message = f"delivery to {g.name} ({env_name}) failed: {_describe(exc)}"
            needed = [u for u in g.unresolved if u.purpose is Purpose.GIT_AUTH]
            if needed and code is ExitCode.GIT and _AUTH_REFUSED.search(str(exc)):  # file mode: the Secret was needed
                code, message = ExitCode.USAGE, needed[0].needed(f"the remote {safe_url(g.url)} asked for credentials")
            for item in items:
                failed(item, code, message)
            return
        report.results.append((env_name, result))
        now = self.clock()
        self._peer(f"git {g.name}", now, None)
        skipped = {s.subject: s.reason for s in result.skipped}
        pr = result.pr.url if result.pr else None
        for item in items:
            if item.subject in skipped:  # Git does not hold it: a failure, never the current tag
                failed(item, ExitCode.EDIT, f"{item.image.name} {env_name}: {item.ref} not written: {skipped[item.subject]}")
                continue
            self.backoff.succeeded((item.image.name, item.env.name))
            self._delivered(item, result, env_name, g.name)
            why = f"; {item.note}" if item.note else ""
            if item.subject in result.proposed:  # only the PR's branch holds it: current once merged
                reason = f"{result.status}: {item.ref.identifier} proposed in {pr}, current once merged{why}"
                self.state.record(item.image.name, item.env.name, reason=reason, pending=item.ref.tag, now=now, pr=pr)
                continue
            self.state.record(  # confirmed by reading the tree back: the environment's branch holds this value
                item.image.name,
                item.env.name,
                reason=f"{result.status}: {item.ref.identifier}{why}",
                pending=None,
                now=now,
                tag=item.ref.tag,
                digest=item.ref.digest,
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
