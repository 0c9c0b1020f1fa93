"""`imagebot controller`: Flux's image objects from the cluster, one reconcile per object key.

- ImageRepository, ImagePolicy and ImageUpdateAutomation (``image.toolkit.fluxcd.io/v1``) and GitRepository come
  from shared informers (one list+watch per resource type and namespace scope). Every change enqueues that object's
  key on one WorkQueue; N workers reconcile keys concurrently; a failing key (bad Secret, unreachable registry,
  invalid policy) is requeued with its own backoff and touches nothing else. A registry call has an overall
  deadline (``spec.timeout``, else 30 s), git has its low-speed limits: a slow peer holds one worker at most.
- ImageRepository → scan (imagebot.registry) → status ``lastScanResult``; the tags stay in this process's memory
  (never in status), and the policies naming the repository are enqueued when they change.
- ImagePolicy → select (imagebot.policy) over its repository's tags → ``latestRef``; a new ``latestRef`` enqueues
  the namespace's ImageUpdateAutomations (Flux v1 without policySelector: every policy of the namespace) and the
  policies promoting from it. imagebot's guards (``imagebot.dev/*`` annotations: promotion + soak, minimum age,
  downgrade guard, hold) are file mode's decide() (promotion.py); the times they need are annotations in the cluster.
- ImageUpdateAutomation → clone / edit the setter markers / commit / push (imagebot.gitops.writer) with the
  ``latestRef`` of every ImagePolicy of its namespace → ``lastPushCommit``, ``observedPolicies``, …
- Secrets (registry dockerconfigjson, ServiceAccount imagePullSecrets, certSecretRef, the GitRepository's
  secretRef, signingKey) are read with GET when the object is reconciled, so a fixed password is used at the
  next retry; a missing or malformed one is a Ready=False condition naming it, and nothing is written.
- Sharding: without ``--shard`` the objects without a ``sharding.fluxcd.io/key`` label (Flux's own sharding
  label), with ``--shard KEY`` those labelled KEY; ``--leader-elect`` keeps one writer per shard.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gitopskit import fluxsecrets as fs
from gitopskit.errors import KitError
from gitopskit.informer import ApiTransport, EventType, Informer, Key
from gitopskit.kube import request_json
from gitopskit.lease import LeaderElector
from gitopskit.notify import Emitter, Event, FailureTracker, NullEmitter, ObjectRef
from gitopskit.notify import EventType as NotifyType
from gitopskit.openpgp import OpenPGPKey
from gitopskit.sharding import AutoShards
from gitopskit.workqueue import Backoff, Controller, Result, WorkQueue
from gitopskit.workspace import GitAuth, Identity, SSHSigningKey, Workspace, flux_git_auth
from imagebot import refs
from imagebot.config import flux
from imagebot.config import fluxextras as fx
from imagebot.controller import promotion as P
from imagebot.controller import status as S
from imagebot.errors import FAILURES, ImagebotError
from imagebot.gitops.gotemplate import GoMessage
from imagebot.gitops.writer import Delivery, Mode, Status, deliver
from imagebot.policy.filter import Exclusions
from imagebot.registry.auth import NO_CREDENTIALS, Credentials, CredentialSource, StaticCredentials
from imagebot.registry.client import RegistryClient, RegistrySettings
from imagebot.registry.signatures import MemoryVerdicts, SignatureChecker
from imagebot.update import EditRequest
from imagebot.verify import DEFAULT_LIMIT, Verification, VerifyError, first_verified, secret_keys

log = logging.getLogger(__name__)

IMAGE_API = "image.toolkit.fluxcd.io/v1"
IMAGE_PATH = f"/apis/{IMAGE_API}"
SOURCE_PATH = "/apis/source.toolkit.fluxcd.io/v1"
SHARD_LABEL = "sharding.fluxcd.io/key"  # Flux's sharding label: the same objects shard the same way
REFLECTOR = "imagebot-controller"  # source.component of the Events we record

# imagebot's extras on an ImageUpdateAutomation (annotations: Flux's schema stays as it is)
PULL_REQUEST = "imagebot.dev/pull-request"  # "true": open/update one pull request instead of pushing
GITHUB_REPOSITORY = "imagebot.dev/github-repository"  # owner/name
GITHUB_API = "imagebot.dev/github-api"  # default https://api.github.com (GitHub Enterprise: https://HOST/api/v3)
GITHUB_TOKEN_SECRET = "imagebot.dev/github-token-secret"  # a Secret of the namespace, key "token"
PR_LABELS = "imagebot.dev/pull-request-labels"  # comma-separated
# … on an ImagePolicy
COSIGN_SECRET = flux.COSIGN_SECRET  # a Secret of the namespace: its *.pub entries are the trusted cosign keys

REPOSITORY, POLICY, AUTOMATION = "ImageRepository", "ImagePolicy", "ImageUpdateAutomation"
PLURAL = {REPOSITORY: "imagerepositories", POLICY: "imagepolicies", AUTOMATION: "imageupdateautomations"}
DEFAULT_TIMEOUT = 30.0  # an ImageRepository's registry deadline when spec.timeout is absent (Flux: interval, ≤ 60 s)
MAX_TAGS = 100_000  # per repository held in memory; more is refused as a scan failure


@dataclass(frozen=True, slots=True, order=True)
class ObjKey:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def path(self) -> str:
        return f"{IMAGE_PATH}/namespaces/{self.namespace}/{PLURAL[self.kind]}/{self.name}"


@dataclass(frozen=True, slots=True)
class Scan:
    """One ImageRepository's last successful scan, held in memory: the policies select from it."""

    canonical: str  # canonical image name, e.g. 127.0.0.1:5000/team/app
    image: str  # the image as the spec wrote it (latestRef.name)
    tags: tuple[str, ...]
    at: float  # wall-clock time of the scan
    generation: int
    access: flux.RegistryAccess
    signatures: tuple[str, ...] = ()  # the listing's sha256-<hex>[.sig] tags (exclusionList or not): a signature's news


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        labels = ["kind", "namespace", "name"]
        self.ready = Gauge("imagebot_object_ready", "1 when the object is Ready", labels, registry=r)
        self.reconciles = Counter("imagebot_reconciles_total", "Reconciles by kind and result", ["kind", "result"], registry=r)
        self.duration = Histogram("imagebot_reconcile_seconds", "One reconcile", ["kind"], registry=r)
        self.tags = Gauge("imagebot_repository_tags", "Tags held per ImageRepository", labels, registry=r)
        self.pushes = Counter("imagebot_controller_pushes_total", "Commits pushed by automations", registry=r)
        self.signature_checks = Counter(
            "imagebot_signature_checks_total", "Signature verdicts by where they came from", ["source"], registry=r
        )
        self.unverified = Counter(
            "imagebot_signature_rejections_total",
            "Allowed tags an ImagePolicy passed over because their cosign signature did not verify",
            ["namespace", "name", "reason"],
            registry=r,
        )


class Failed(Exception):
    """A reconcile that failed with a Flux reason; requeued with the key's backoff unless ``stalled``."""

    def __init__(self, reason: str, message: str, stalled: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.stalled = reason, message, stalled


class Waiting(Exception):
    """A dependency is not ready yet (its own reconcile enqueues this key when it is)."""


_REFERENCE_FIELDS = ("secretRef", "certSecretRef", "serviceAccountName", "signingKey")


def _is_reference_problem(p: flux.FluxProblem) -> bool:
    return any(f in p.field for f in _REFERENCE_FIELDS)


def _flux_failure(exc: flux.FluxError, invalid_reason: str) -> Failed:
    """A translation error: a Secret or ServiceAccount problem is retried with backoff (someone may fix or create
    it); anything else only a spec change can help (Stalled)."""
    problems = exc.problems or ()
    if problems and all(_is_reference_problem(p) for p in problems):
        return Failed(S.Reason.AUTHENTICATION_FAILED, str(exc))
    return Failed(invalid_reason, str(exc), stalled=True)


class ImageController:
    def __init__(
        self,
        api: Any,
        namespaces: tuple[str, ...] = (),
        shard: str = "",
        workers: int = 4,
        cache: Path | None = None,
        elector: LeaderElector | None = None,
        shards: AutoShards | None = None,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self.api = api
        self.namespaces = namespaces
        self.shard = shard
        self.elector = elector
        # --shards auto: a namespace's objects go to one replica together (its automations read every policy of
        # the namespace, its policies the tags its repositories' scans hold in that replica's memory)
        self.shards = shards
        self.clock = clock
        self.metrics = Metrics()
        base = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagebot" / "controller"
        self.git_cache = base / "git"
        self.secrets_dir = Path(tempfile.mkdtemp(prefix="imagebot-secrets-"))
        os.chmod(self.secrets_dir, stat.S_IRWXU)
        self.queue: WorkQueue[ObjKey] = WorkQueue(backoff=backoff or Backoff(base=1.0, cap=300.0))
        self.controller: Controller[ObjKey] = Controller("images", self.reconcile, workers=workers, queue=self.queue)
        self._lock = threading.Lock()
        self.scans: dict[tuple[str, str], Scan] = {}  # ImageRepository (ns, name) → its last good scan
        self._clients: dict[tuple[Any, ...], RegistryClient] = {}
        self._workspaces: dict[tuple[str, str, str], Workspace] = {}
        self._written: dict[ObjKey, dict[str, Any]] = {}  # the last status patch written per key
        self.verdicts = MemoryVerdicts()  # cosign verdicts per (repository, digest, key set): a rescan refetches none
        self._told: dict[ObjKey, str] = {}  # per policy: the waiting tag last told in an Event
        self._stop = threading.Event()
        self.notifier: Emitter = NullEmitter()  # notifications (`--notify-config`): commits pushed, peers failing long
        self.peers = FailureTracker(600.0)
        transport = ApiTransport(api)
        selector = f"{SHARD_LABEL}={shard}" if shard else f"!{SHARD_LABEL}"
        scopes = [f"/namespaces/{ns}" for ns in namespaces] or [""]
        self.informers: dict[str, list[Informer]] = {
            kind: [Informer(transport, f"{IMAGE_PATH}{s}/{PLURAL[kind]}", selector) for s in scopes] for kind in PLURAL
        }
        self.gitrepos = [Informer(transport, f"{SOURCE_PATH}{s}/gitrepositories") for s in scopes]
        for kind, infs in self.informers.items():
            for inf in infs:
                inf.add_handler(self._on_object(kind))
        for inf in self.gitrepos:
            inf.add_handler(self._on_gitrepo)

    # ------------------------------------------------------------------ lifecycle
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def mine(self, namespace: str) -> bool:
        """Does this replica reconcile the objects of ``namespace`` now (leader of its shard, or holder of its slot)?"""
        return self.is_leader() and (self.shards is None or self.shards.owns(namespace))

    def _fence(self, namespace: str) -> None:
        """Right before every write: raises NotLeader when this replica may no longer write for ``namespace``."""
        if self.elector is not None:
            self.elector.fence()
        if self.shards is not None:
            self.shards.fence(namespace)

    def _watch_leadership(self) -> None:
        assert self.elector is not None
        was = False
        while not self._stop.wait(min(self.elector.timing.retry_period, 1.0)):
            now = self.elector.is_leader()
            if now and not was:
                self._enqueue_all()  # a new leader looks at everything at once: its caches are warm
            was = now

    def start(self) -> None:
        if self.elector is not None:
            self.elector.start()
            threading.Thread(target=self._watch_leadership, name="leadership", daemon=True).start()
        if self.shards is not None:
            self.shards.on_change = self._enqueue_all  # slots gained: their objects are looked at now
            self.shards.start()
        for inf in self._all_informers():
            inf.start(self._stop)
        self.controller.start()

    def stop(self, timeout: float = 30.0) -> bool:
        self._stop.set()
        done = self.controller.stop(timeout)
        if self.elector is not None:
            self.elector.stop(release=True)
        if self.shards is not None:
            self.shards.stop()
        shutil.rmtree(self.secrets_dir, ignore_errors=True)
        return done

    def _all_informers(self) -> list[Informer]:
        return [inf for infs in self.informers.values() for inf in infs] + self.gitrepos

    def wait_synced(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        return all(inf.wait_synced(max(end - time.monotonic(), 0)) for inf in self._all_informers())

    # ------------------------------------------------------------------ events → keys
    def _on_object(self, kind: str) -> Callable[[EventType, dict[str, Any], dict[str, Any] | None], None]:
        def handler(etype: EventType, obj: dict[str, Any], prev: dict[str, Any] | None) -> None:
            k = Key.of(obj)
            key = ObjKey(kind, k.namespace, k.name)
            if etype is EventType.DELETED:
                self._forget(key)
                if kind == POLICY:
                    self._enqueue_automations(k.namespace)
                elif kind == REPOSITORY:
                    self._enqueue_policies(k.namespace, k.name)  # their repository is gone: they say so
                return
            if (
                prev is not None
                and S.generation(prev) == S.generation(obj)
                and S.requested_at(prev) == S.requested_at(obj)
                and _annotations(prev) == _annotations(obj)  # imagebot's annotations change no generation
            ):
                # a status write (ours, or another writer's): a policy's new latestRef is news for the automations
                if kind == POLICY and (obj.get("status") or {}).get("latestRef") != (prev.get("status") or {}).get("latestRef"):
                    self._enqueue_automations(k.namespace)
                    self._enqueue_promoters(k.namespace, k.name)
                elif kind == REPOSITORY and S.ready_of(obj).get("reason") != S.ready_of(prev).get("reason"):
                    self._enqueue_policies(k.namespace, k.name)  # a policy waiting on it says what it waits for
                return
            self.queue.add(key)

        return handler

    def _on_gitrepo(self, etype: EventType, obj: dict[str, Any], prev: dict[str, Any] | None) -> None:
        if etype is not EventType.DELETED and prev is not None and S.generation(prev) == S.generation(obj):
            return
        k = Key.of(obj)
        for inf in self.informers[AUTOMATION]:
            for auto in inf.objects():
                src = (auto.get("spec") or {}).get("sourceRef") if isinstance(auto.get("spec"), dict) else None
                at = Key.of(auto)
                if isinstance(src, dict) and src.get("name") == k.name and (src.get("namespace") or at.namespace) == k.namespace:
                    self.queue.add(ObjKey(AUTOMATION, at.namespace, at.name))

    def _enqueue_all(self) -> None:
        for kind, infs in self.informers.items():
            for inf in infs:
                for k in inf.cached_keys():
                    self.queue.add(ObjKey(kind, k.namespace, k.name))

    def _enqueue_automations(self, namespace: str) -> None:
        for inf in self.informers[AUTOMATION]:
            for k in inf.cached_keys():
                if k.namespace == namespace:
                    self.queue.add(ObjKey(AUTOMATION, k.namespace, k.name))

    def _enqueue_policies(self, namespace: str, name: str) -> None:
        for inf in self.informers[POLICY]:
            for obj in inf.objects():
                spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
                ref = spec.get("imageRepositoryRef") if isinstance(spec, dict) else None
                at = Key.of(obj)
                if isinstance(ref, dict) and ref.get("name") == name and (ref.get("namespace") or at.namespace) == namespace:
                    self.queue.add(ObjKey(POLICY, at.namespace, at.name))

    def _forget(self, key: ObjKey) -> None:
        self._written.pop(key, None)
        self.queue.forget(key)
        if key.kind == REPOSITORY:
            with self._lock:
                self.scans.pop((key.namespace, key.name), None)

    # ------------------------------------------------------------------ lookups
    def _object(self, key: ObjKey) -> dict[str, Any] | None:
        for inf in self.informers[key.kind]:
            obj = inf.get(Key(key.namespace, key.name))
            if obj is not None:
                return obj
        return None

    def _gitrepo(self, namespace: str, name: str) -> dict[str, Any] | None:
        for inf in self.gitrepos:
            obj = inf.get(Key(namespace, name))
            if obj is not None:
                return obj
        return None

    def _resolve(self, references: tuple[flux.Reference, ...]) -> flux.Resolved:
        """GET every Secret and ServiceAccount the object names (and the pull Secrets of those ServiceAccounts);
        an absent one is left out, so the translation names it as missing."""
        secrets: dict[tuple[str, str], fs.Secret] = {}
        accounts: dict[tuple[str, str], tuple[str, ...]] = {}
        wanted = [(r.kind, r.namespace, r.name) for r in references]
        while wanted:
            kind, ns, name = wanted.pop(0)
            if (ns, name) in (secrets if kind == "Secret" else accounts):
                continue
            obj = self._get(f"/api/v1/namespaces/{ns}/{'secrets' if kind == 'Secret' else 'serviceaccounts'}/{name}", kind)
            if obj is None:
                continue
            if kind == "Secret":
                try:
                    secrets[(ns, name)] = fs.secret_from_object(obj)
                except fs.SecretError as exc:
                    raise Failed(S.Reason.AUTHENTICATION_FAILED, str(exc)) from None
            else:
                accounts[(ns, name)] = flux.pull_secret_names(obj)
                wanted += [("Secret", ns, n) for n in accounts[(ns, name)]]
        return flux.Resolved(secrets, accounts, cluster=True)

    def _get(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            return request_json(self.api, "GET", path, timeout=30) or {}
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise Failed(S.Reason.AUTHENTICATION_FAILED, f"{what} {path.rsplit('/', 1)[-1]}: HTTP {exc.status}") from None

    # ------------------------------------------------------------------ one reconcile
    def reconcile(self, key: ObjKey) -> Result | None:
        if not self.wait_synced(0):  # as controller-runtime waits for its caches: a GitRepository or ImagePolicy not
            return Result(requeue_after=0.2)  # listed yet is not "not found" (a restart wrote that, and an Event)
        if not self.mine(key.namespace):
            if self.shards is not None and key.kind == REPOSITORY:
                with self._lock:  # another replica holds this namespace now: its tags are that replica's to keep
                    self.scans.pop((key.namespace, key.name), None)
            return None  # a standby keeps its caches warm; gaining the lease or a slot enqueues everything
        obj = self._object(key)
        if obj is None:
            self._forget(key)
            return None
        if (obj.get("spec") or {}).get("suspend") is True:
            self.metrics.reconciles.labels(key.kind, "suspended").inc()
            return None
        t0 = time.perf_counter()
        labels = (key.kind, key.namespace, key.name)
        run = {REPOSITORY: self._repository, POLICY: self._policy, AUTOMATION: self._automation}[key.kind]
        try:
            result = run(key, obj)
        except Waiting as exc:
            self._write_status(key, obj, S.failure(obj, S.Reason.DEPENDENCY_NOT_READY, str(exc)))
            self.metrics.ready.labels(*labels).set(0)
            self.metrics.reconciles.labels(key.kind, "waiting").inc()
            return None  # the dependency's reconcile enqueues this key
        except Failed as exc:
            self._write_status(key, obj, S.failure(obj, exc.reason, exc.message, exc.stalled))
            self._event(obj, exc.reason, exc.message, S.EventType.WARNING)
            self.metrics.ready.labels(*labels).set(0)
            self.metrics.reconciles.labels(key.kind, "stalled" if exc.stalled else "failed").inc()
            if exc.stalled:
                return None  # nothing changes until the spec does (its update enqueues the key)
            raise  # requeued with this key's own backoff
        self.metrics.ready.labels(*labels).set(1)
        self.metrics.reconciles.labels(key.kind, "ok").inc()
        self.metrics.duration.labels(key.kind).observe(time.perf_counter() - t0)
        return result

    # ImageRepository ---------------------------------------------------------------------------------------
    def _repository(self, key: ObjKey, obj: dict[str, Any]) -> Result:
        try:
            refs_ = flux.references(obj)
            repo = flux.image_repository(obj, self._resolve(refs_))
        except flux.FluxError as exc:
            raise _flux_failure(exc, S.Reason.INVALID_IMAGE) from None
        try:
            excluded = Exclusions(repo.exclusions)
        except ImagebotError as exc:
            raise Failed(S.Reason.INVALID_IMAGE, f"spec.exclusionList: {exc}", stalled=True) from None
        rk = (key.namespace, key.name)
        with self._lock:
            prev = self.scans.get(rk)
        old = obj.get("status") or {}
        requested = bool(S.requested_at(obj)) and S.requested_at(obj) != old.get("lastHandledReconcileAt")
        now = self.clock()
        if (
            prev is not None
            and not requested
            and prev.generation == S.generation(obj)
            and prev.access == repo.access
            and now - prev.at < repo.interval
        ):
            return Result(requeue_after=repo.interval - (now - prev.at))
        client = self._client(repo.access)
        try:
            listing = client.tag_listing(repo.image.canonical_path)
        except ImagebotError as exc:
            self._peer(f"registry {repo.image.canonical_registry}", str(exc))
            auth = "401" in str(exc) or "403" in str(exc) or "auth" in str(exc).lower()
            raise Failed(S.Reason.AUTHENTICATION_FAILED if auth else S.Reason.READ_FAILED, str(exc)) from None
        self._peer(f"registry {repo.image.canonical_registry}", None)
        tags = tuple(t for t in listing.tags if excluded.excludes(t) is None)  # Flux filters at scan time
        if len(tags) > MAX_TAGS:
            raise Failed(S.Reason.READ_FAILED, f"{len(tags)} tags: more than the {MAX_TAGS:,} one repository may hold")
        marks = tuple(t for t in listing.tags if t.startswith("sha256-"))
        scan = Scan(repo.image.canonical_name, str(obj["spec"]["image"]), tags, now, S.generation(obj), repo.access, marks)
        with self._lock:
            self.scans[rk] = scan
        self.metrics.tags.labels(key.kind, key.namespace, key.name).set(len(tags))
        status = S.repository_status(obj, repo.image.canonical_name, tags, now, repo.exclusions)
        self._write_status(key, obj, status, force=True)
        if prev is None or prev.tags != tags:
            if prev is not None:
                self._event(obj, S.Reason.SUCCEEDED, f"successful scan: found {len(tags)} tags", S.EventType.NORMAL)
            self._enqueue_policies(key.namespace, key.name)
        elif prev.signatures != marks:  # a signature pushed after its image (its .sig tag excluded from the tags)
            self._enqueue_policies(key.namespace, key.name)
        return Result(requeue_after=repo.interval)

    def _client(self, access: flux.RegistryAccess) -> RegistryClient:
        """One registry client per distinct access (host, credentials, TLS, timeout): repositories that share it
        share connections and tokens; each call is bounded by the client's overall deadline."""
        key = (access.host, access.insecure, access.credentials, access.tls, access.timeout)
        with self._lock:
            c = self._clients.get(key)
        if c is not None:
            return c
        deadline = access.timeout or DEFAULT_TIMEOUT
        settings = RegistrySettings(
            access.host,
            plain_http=access.insecure,
            credentials=_credentials(access.credentials),
            timeout=min(15.0, deadline),
            deadline=deadline,
            tls=access.tls,  # the certSecretRef's CA and client certificate, from memory
        )
        c = RegistryClient(settings)
        with self._lock:
            return self._clients.setdefault(key, c)

    # ImagePolicy -------------------------------------------------------------------------------------------
    def _policy(self, key: ObjKey, obj: dict[str, Any]) -> Result | None:
        try:
            pol = flux.image_policy(obj)
        except flux.FluxError as exc:
            raise Failed(S.Reason.INVALID_POLICY, str(exc), stalled=True) from None
        with self._lock:
            scan = self.scans.get(pol.repository)
        repo_name = f"{pol.repository[0]}/{pol.repository[1]}"
        if scan is None:
            repo_obj = self._object(ObjKey(REPOSITORY, *pol.repository))
            if repo_obj is None:
                raise Waiting(f"ImageRepository {repo_name} not found")
            why = S.ready_of(repo_obj)
            if why.get("status") == "False":  # say why, so the policy's own status leads to the cause
                raise Waiting(f"ImageRepository {repo_name} is not ready: {why.get('reason')}: {why.get('message')}")
            raise Waiting(f"ImageRepository {repo_name} has not been scanned yet")
        pick = self._pick(key, obj, pol, scan)  # the tag under imagebot's guards (annotations: promotion.py)
        if not isinstance(pick, Pick):
            return pick  # no tag to resolve to yet: the status says why
        tag, digest = pick.tag, pick.digest
        cosign_secret = ((obj.get("metadata") or {}).get("annotations") or {}).get(COSIGN_SECRET)
        if cosign_secret is not None and pick.new:  # only a tag whose digest a key of the Secret signed
            tag, digest = self._signed_tag(key, cosign_secret, scan, pick.select)
            if pol.digest_reflection is flux.DigestReflection.NEVER:
                digest = ""
        elif not digest and pol.digest_reflection is not flux.DigestReflection.NEVER:
            old = (obj.get("status") or {}).get("latestRef") or {}
            if pol.digest_reflection is flux.DigestReflection.IF_NOT_PRESENT and old.get("tag") == tag and old.get("digest"):
                digest = str(old["digest"])
            else:
                try:
                    digest = self._client(scan.access).manifest_digest(refs.parse_name(scan.canonical).canonical_path, tag)
                except ImagebotError as exc:
                    raise Failed(S.Reason.READ_FAILED, f"digest of {scan.canonical}:{tag}: {exc}") from None
        status = pick.status(S.policy_status(obj, scan.image, tag, digest), obj)
        self._record_first_seen(key, obj, pick)
        old_ref = (obj.get("status") or {}).get("latestRef") or {}
        if self._write_status(key, obj, status) and old_ref != status["latestRef"]:
            # the automations of the namespace are enqueued by the informer's event for this write (their reconcile
            # reads latestRef from the cache: enqueued now, they could read the old one)
            what = f"from {old_ref.get('tag')} to {tag}" if old_ref.get("tag") else f"to {tag}"
            self._event(obj, S.Reason.SUCCEEDED, f"Latest image tag for {scan.image} resolved {what}", S.EventType.NORMAL)
        self._remember(key, obj, pick, tag, digest)
        if pick.remaining:
            return Result(requeue_after=pick.remaining)  # the soak or the minimum age ends then
        if pol.digest_reflection is flux.DigestReflection.ALWAYS and pol.interval:
            return Result(requeue_after=pol.interval)
        return None  # looked at again when its repository's tags change

    def _signed_tag(self, key: ObjKey, secret: object, scan: Scan, select: Callable[[list[str]], str | None]) -> tuple[str, str]:
        """The newest tag ``select`` allows whose digest carries a cosign signature by a key of the Secret
        ``imagebot.dev/cosign-secret`` names (every ``*.pub`` entry), and that digest; newer tags that fail are
        passed over (at most DEFAULT_LIMIT signature fetches per reconcile: verdicts are cached per digest)."""
        where = f"metadata.annotations[{COSIGN_SECRET}]"
        if not isinstance(secret, str) or not secret.strip():
            raise Failed(S.Reason.INVALID_POLICY, f"{where}: must name a Secret of namespace {key.namespace}", stalled=True)
        ref = f"{key.namespace}/{secret}"
        obj = self._get(f"/api/v1/namespaces/{key.namespace}/secrets/{secret}", "Secret")
        if obj is None:
            raise Failed(S.Reason.AUTHENTICATION_FAILED, f"Secret {ref} ({COSIGN_SECRET}) not found")
        try:
            keys = secret_keys(fs.secret_from_object(obj).data, ref)
        except (fs.SecretError, VerifyError) as exc:
            raise Failed(S.Reason.AUTHENTICATION_FAILED, f"{where}: {exc}") from None
        image = refs.parse_name(scan.canonical)
        client = self._client(scan.access)
        checker = SignatureChecker(_OneClient(client), keys, self.verdicts, self.clock)
        digests: dict[str, str] = {}

        def check(tag: str) -> tuple[Verification, bool]:
            digests[tag], verdict, fetched = checker.check(image, tag, scan.signatures)
            self.metrics.signature_checks.labels("registry" if fetched else "cache").inc()
            if not verdict.ok:
                self.metrics.unverified.labels(key.namespace, key.name, str(verdict.status)).inc()
            return verdict, fetched

        try:
            gated = first_verified(select, scan.tags, check, DEFAULT_LIMIT)
        except ImagebotError as exc:
            raise Failed(S.Reason.READ_FAILED, f"signatures of {scan.canonical}: {exc}") from None
        if gated.winner is None:
            why = f": {gated.reasons()}" if gated.rejected else ""
            if gated.exhausted:  # requeued with backoff: the next reconcile starts below the cached failures
                raise Failed(S.Reason.FAILED, f"no tag of {scan.canonical} signed by a key of Secret {ref} within "
                                              f"{DEFAULT_LIMIT} signature checks{why}")  # fmt: skip
            raise Failed(S.Reason.FAILED, f"no tag of {scan.canonical} satisfying the policy is signed by a key of "
                                          f"Secret {ref}{why}")  # fmt: skip
        if gated.rejected:
            log.info("%s: %s selected, newer tags passed over: %s", key, gated.winner, gated.reasons())
        return gated.winner, digests[gated.winner]

    def _pick(self, key: ObjKey, obj: dict[str, Any], pol: flux.Policy, scan: Scan) -> Pick | Result | None:
        """The policy's tag under imagebot's guards (its ``imagebot.dev/*`` annotations: promotion + soak, minimum
        age, downgrade guard, hold), decided by file mode's core; a Result when there is no tag to resolve to yet
        (the status written here says why)."""
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        try:
            extras = fx.parse(annotations, key.name)
            stored = P.read_first_seen(annotations)
        except fx.ExtrasError as exc:
            raise Failed(S.Reason.INVALID_POLICY, str(exc), stalled=True) from None
        latest = (obj.get("status") or {}).get("latestRef") or {}
        current = None  # a latestRef of another image (imageRepositoryRef changed) is no current tag to guard
        if isinstance(latest, dict) and latest.get("tag") and latest.get("name") == scan.image:
            current = (str(latest["tag"]), str(latest.get("digest") or ""))
        source = self._source(key, extras) if extras.promote_from else None
        spec, now = replace(pol.spec, excludes=()), self.clock()  # the repository's exclusionList was applied at its scan
        try:
            choice = P.choose(key.name, spec, extras, scan.tags, current, source, stored, now)
        except ImagebotError as exc:
            raise Failed(S.Reason.INVALID_POLICY, str(exc), stalled=True) from None
        if choice.tag is None and choice.why is None and (current is None or choice.message.startswith("no tag qualifies")):
            raise Failed(S.Reason.FAILED, f"no tag of {scan.canonical} ({len(scan.tags)} tags) satisfies the policy")
        if extras.promote_from and choice.tag is not None and choice.tag not in scan.tags:
            raise Failed(S.Reason.FAILED, f"{choice.tag} (promoted from {extras.promote_from}) is not a tag of {scan.canonical}")
        def select(tags: list[str]) -> str | None:  # the gate walks down from the choice to (at worst) the current tag
            tag = P.choose(key.name, spec, extras, tags, current, source, stored, now).tag
            return tag if tag is not None else (current[0] if current is not None and current[0] in tags else None)

        digest = choice.digest if pol.digest_reflection is not flux.DigestReflection.NEVER else ""  # a promotion's, as reflected
        pick = Pick(choice.tag or (current[0] if current else ""), digest, choice, extras, current and current[0], select)
        if pick.tag:
            return pick
        # nothing resolved yet and a reason to wait (soaking, too young, held): say so, look again when it may move
        self._record_first_seen(key, obj, pick)
        self._write_status(key, obj, S.failure(obj, str(choice.why), choice.message))
        self._remember(key, obj, pick, "", "")
        return Result(requeue_after=choice.remaining) if choice.remaining else None

    def _source(self, key: ObjKey, extras: fx.Extras) -> P.Source:
        """The ImagePolicy ``imagebot.dev/promote-from`` names: its latestRef and since when it has had it (recorded
        on it now when it has no record yet — a soak never starts before the controller saw the tag)."""
        name = str(extras.promote_from)
        obj = self._object(ObjKey(POLICY, key.namespace, name))
        where = f"metadata.annotations[{fx.PROMOTE_FROM}]"
        if obj is None:
            raise Failed(S.Reason.INVALID_POLICY, f"{where}: ImagePolicy {key.namespace}/{name} not found")
        latest = (obj.get("status") or {}).get("latestRef") or {}
        if not isinstance(latest, dict) or not latest.get("tag"):
            return P.Source(name, None, "", 0.0)
        tag, digest = str(latest["tag"]), str(latest.get("digest") or "")
        try:
            since = P.since_of(P.read_history((obj.get("metadata") or {}).get("annotations") or {}), tag, digest)
        except fx.ExtrasError as exc:
            raise Failed(S.Reason.INVALID_POLICY, f"ImagePolicy {key.namespace}/{name}: {exc}") from None
        if since is None:
            since = self._record_since(ObjKey(POLICY, key.namespace, name), tag, digest)
        return P.Source(name, tag, digest, since)

    def _record_since(self, key: ObjKey, tag: str, digest: str) -> float:
        """Since when ``key`` has had this latestRef, from its ``imagebot.dev/latest-since`` (read fresh); recorded
        as now when missing, with the object's resourceVersion as a precondition (a concurrent writer: read again)."""
        now = self.clock()
        for _ in range(3):
            obj = self._get(key.path, POLICY)
            if obj is None:
                return now
            meta = obj.get("metadata") or {}
            latest = (obj.get("status") or {}).get("latestRef") or {}
            if not isinstance(latest, dict) or (latest.get("tag"), str(latest.get("digest") or "")) != (tag, digest):
                return now  # it moved meanwhile: its own reconcile records the new one
            try:
                history = P.read_history(meta.get("annotations") or {})
            except fx.ExtrasError:
                history = ()  # a hand-edited record is replaced by a valid one
            since = P.since_of(history, tag, digest)
            if since is not None:
                return since
            value = P.with_entry(history, tag, digest, now)
            body = {"metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": {fx.LATEST_SINCE: value}}}
            self._fence(key.namespace)
            try:
                request_json(self.api, "PATCH", key.path, body=body, content_type="application/merge-patch+json", timeout=30)
                return now
            except ApiException as exc:
                if exc.status != 409:
                    log.warning("%s: %s not written: HTTP %s", key, fx.LATEST_SINCE, exc.status)
                    return now
        return now

    def _record_first_seen(self, key: ObjKey, obj: dict[str, Any], pick: Pick) -> None:
        """The min-age record on the policy, written before the status that reports from it: a restart in between
        must not find a status whose ages it cannot read back."""
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        seen = pick.choice.first_seen
        value = P.dump_first_seen(seen) if seen is not None else None
        if annotations.get(fx.FIRST_SEEN) != value:
            self._fence(key.namespace)
            try:
                request_json(self.api, "PATCH", key.path, body={"metadata": {"annotations": {fx.FIRST_SEEN: value}}},
                             content_type="application/merge-patch+json", timeout=30)  # fmt: skip
            except ApiException as exc:
                log.warning("%s: %s not written: HTTP %s", key, fx.FIRST_SEEN, exc.status)

    def _remember(self, key: ObjKey, obj: dict[str, Any], pick: Pick, tag: str, digest: str) -> None:
        """After a policy's status is written: since when it has its latestRef, when another policy promotes from it
        (read back against the written latestRef), and a waiting tag is an Event once per tag and reason."""
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if tag and self._promoted_from(key.namespace, key.name):
            try:  # recorded already (the cached object's record): nothing to read or write
                known = P.since_of(P.read_history(annotations), tag, digest) is not None
            except fx.ExtrasError:
                known = False
            if not known:
                self._record_since(key, tag, digest)
        told = f"{pick.choice.why} {pick.choice.pending or pick.choice.message}" if pick.choice.why else ""
        with self._lock:
            changed = self._told.get(key, "") != told
            self._told[key] = told
        if changed and told:
            self._event(obj, str(pick.choice.why), pick.choice.message, S.EventType.NORMAL)

    def _promoted_from(self, namespace: str, name: str) -> list[ObjKey]:
        """The ImagePolicies of the namespace whose ``imagebot.dev/promote-from`` names ``name``."""
        out = []
        for inf in self.informers[POLICY]:
            for obj in inf.objects(namespace):
                if ((obj.get("metadata") or {}).get("annotations") or {}).get(fx.PROMOTE_FROM) == name:
                    k = Key.of(obj)
                    out.append(ObjKey(POLICY, k.namespace, k.name))
        return out

    def _enqueue_promoters(self, namespace: str, name: str) -> None:
        for k in self._promoted_from(namespace, name):
            self.queue.add(k)

    # ImageUpdateAutomation --------------------------------------------------------------------------------
    def _automation(self, key: ObjKey, obj: dict[str, Any]) -> Result:
        spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
        src: dict[str, Any] = spec["sourceRef"] if isinstance(spec.get("sourceRef"), dict) else {}
        src_ns, src_name = str(src.get("namespace") or key.namespace), str(src.get("name") or "")
        gitrepo = self._gitrepo(src_ns, src_name) if src_name else None
        if src_name and gitrepo is None:
            raise Failed(S.Reason.INVALID_SOURCE, f"GitRepository {src_ns}/{src_name} not found")
        try:
            auto = flux.image_update_automation(obj, gitrepo, self._resolve(flux.references(obj, gitrepo)))
        except flux.FluxError as exc:
            raise _flux_failure(exc, S.Reason.INVALID_SOURCE) from None
        policies, observed, waiting = self._policies_of(key.namespace)
        started = self.clock()
        ws = self._workspace(key, auto)
        go = GoMessage(key.namespace, key.name, auto.message_template, auto.template_values, str(auto.api_version))
        mode = Mode.PUSH_BRANCH if auto.push_branch else Mode.PUSH
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        forge = None
        labels: tuple[str, ...] = ()
        if annotations.get(PULL_REQUEST) == "true":  # imagebot's extra: one pull request instead of a push
            forge = self._forge(key, annotations)
            mode = Mode.PULL_REQUEST
            labels = tuple(x.strip() for x in str(annotations.get(PR_LABELS, "")).split(",") if x.strip())
        delivery = Delivery(mode, auto.branch, auto.path, auto.push_branch, environment=key.name, labels=labels,
                            go_message=go)  # fmt: skip
        request = EditRequest(policies=policies)
        try:
            result = deliver(ws, delivery, request, forge)
        except FAILURES as exc:
            self._peer(f"git {src_ns}/{src_name}", f"{type(exc).__name__}: {exc}")
            raise Failed(S.Reason.GIT_FAILED, f"{type(exc).__name__}: {exc}") from None
        self._peer(f"git {src_ns}/{src_name}", None)
        target = result.branch
        pushed = result.status in (Status.PUSHED, Status.PR_OPENED, Status.PR_UPDATED)
        sha = (result.commit or "") if pushed else ""
        try:  # the revision of the branch the automation checked out, as it was read for this run
            head = ws.tip(auto.branch)
        except Exception:  # nothing was checked out (no policy resolved yet): unknown, not an error
            head = ""
        revision = f"{auto.branch}@sha1:{head}" if head else ""
        if result.status is Status.PUSHED:
            message = f"committed and pushed commit '{sha}' to branch '{target}'"
        elif result.pr is not None:
            verb = {Status.PR_OPENED: "opened", Status.PR_UPDATED: "updated"}.get(result.status, "up-to-date")
            message = f"pull request #{result.pr.number} {verb}: {result.pr.url} (branch '{target}')"
        else:
            message = "repository up-to-date"
        # a policy of the namespace that no marker under update.path names is not this automation's (as in Flux: the
        # namespace's other automations, or a policy whose marker is not in Git yet); a named one not written is
        skipped = [f"{s.subject}: {s.reason}" for s in result.skipped if not s.unmatched]
        if skipped:
            raise Failed(S.Reason.UPDATE_FAILED, "not written: " + "; ".join(skipped[:10]))
        status = S.automation_status(obj, started, message, observed, revision, sha, self.clock())
        if not pushed:  # keep the last push as it was
            old = obj.get("status") or {}
            for k in ("lastPushCommit", "lastPushTime"):
                if old.get(k):
                    status[k] = old[k]
        self._write_status(key, obj, status, force=True)
        if pushed:
            self.metrics.pushes.inc()
            body = result.message.commit_message if result.message is not None else ""
            what = f"; {message}" if result.pr is not None else ""
            self._event(obj, S.Reason.SUCCEEDED, f"Committed and pushed change {sha} to {target}{what}\n{body}",
                        S.EventType.NORMAL, revision=f"{target}@sha1:{sha}")  # fmt: skip
            meta = obj.get("metadata") or {}
            api_version, uid = str(obj.get("apiVersion", "")), str(meta.get("uid") or "")
            where = ObjectRef(api_version, str(obj.get("kind", "")), key.name, key.namespace, uid)
            kind = {Status.PR_OPENED: NotifyType.PR_OPENED, Status.PR_UPDATED: NotifyType.PR_UPDATED}.get(
                result.status, NotifyType.COMMIT_PUSHED
            )
            facts = (("commit", sha), ("branch", target), *((("pr", result.pr.url),) if result.pr is not None else ()))
            news = message if result.pr is not None else f"pushed {sha[:12]} to {target}"
            self.notifier.emit(Event(kind, f"{key.namespace}/{key.name}", news, details=facts, object=where))
        if waiting:
            log.info("%s: policies not ready yet: %s", key, ", ".join(waiting))
        return Result(requeue_after=auto.interval)

    def _forge(self, key: ObjKey, annotations: Mapping[str, Any]) -> Any:
        """The GitHub repository of a pull-request automation, from its annotations; the token from the Secret
        ``imagebot.dev/github-token-secret`` names (key ``token``) in the automation's namespace."""
        repo, secret_name = annotations.get(GITHUB_REPOSITORY), annotations.get(GITHUB_TOKEN_SECRET)
        for name, value in ((GITHUB_REPOSITORY, repo), (GITHUB_TOKEN_SECRET, secret_name)):
            if not isinstance(value, str) or not value:
                raise Failed(S.Reason.INVALID_SPEC, f"metadata.annotations[{name}]: required with {PULL_REQUEST}: \"true\"",
                             stalled=True)  # fmt: skip
        assert isinstance(repo, str) and isinstance(secret_name, str)
        obj = self._get(f"/api/v1/namespaces/{key.namespace}/secrets/{secret_name}", "Secret")
        if obj is None:
            why = f"Secret {key.namespace}/{secret_name} ({GITHUB_TOKEN_SECRET}) not found"
            raise Failed(S.Reason.AUTHENTICATION_FAILED, why)
        try:
            token = fs.secret_from_object(obj).header_value("token", required=False) or ""  # sent as a header
        except fs.SecretError as exc:
            raise Failed(S.Reason.AUTHENTICATION_FAILED, f"Secret {key.namespace}/{secret_name}: {exc}") from None
        if not token:
            raise Failed(S.Reason.AUTHENTICATION_FAILED, f"Secret {key.namespace}/{secret_name}: key 'token' missing or empty")
        from imagebot.forge.github import GitHubForge  # PyGithub costs ~0.3 s to import: only when a PR is due

        api = str(annotations.get(GITHUB_API) or "https://api.github.com")
        return GitHubForge(repo, token, api, throttle=os.environ.get("IMAGEBOT_GITHUB_THROTTLE", "1") != "0")

    def _peer(self, peer: str, error: str | None) -> None:
        with self._lock:
            now = self.clock()
            event = self.peers.succeeded(peer, now) if error is None else self.peers.failed(peer, now, error)
        if event is not None:
            self.notifier.emit(event)

    def _policies_of(self, namespace: str) -> tuple[dict[str, refs.ImageRef], dict[str, dict[str, Any]], list[str]]:
        """Every ImagePolicy of the namespace with a latestRef: the setter values (``ns:name`` → image), Flux's
        ``observedPolicies``, and the names of those without one yet."""
        policies: dict[str, refs.ImageRef] = {}
        observed: dict[str, dict[str, Any]] = {}
        waiting: list[str] = []
        for inf in self.informers[POLICY]:
            for obj in inf.objects(namespace):
                k = Key.of(obj)
                latest = (obj.get("status") or {}).get("latestRef")
                if (obj.get("spec") or {}).get("suspend") is True:
                    continue
                if not isinstance(latest, dict) or not latest.get("tag") or not latest.get("name"):
                    waiting.append(k.name)
                    continue
                try:
                    image = refs.parse_name(str(latest["name"])).with_version(str(latest["tag"]), latest.get("digest") or None)
                except ImagebotError:
                    waiting.append(k.name)
                    continue
                policies[f"{k.namespace}:{k.name}"] = image
                observed[k.name] = S.image_ref(str(latest["name"]), str(latest["tag"]), str(latest.get("digest") or ""))
        return policies, observed, waiting

    def _workspace(self, key: ObjKey, auto: flux.Automation) -> Workspace:
        auth = self._git_auth(auto)
        pgp, ssh = None, None
        if auto.signing_key is not None:  # every commit signed with the key, held in memory
            origin = f"{auto.ref}.spec.git.commit.signingKey"
            if auto.signing_key.type is fs.SigningKeyType.SSH:
                ssh = SSHSigningKey(auto.signing_key.key, auto.signing_key.passphrase, origin)
            else:
                pgp = OpenPGPKey(auto.signing_key.key, auto.signing_key.passphrase, origin)
        identity = Identity(auto.author_name, auto.author_email, openpgp=pgp, ssh=ssh)
        wkey = (str(key), auto.url, auto.branch)
        with self._lock:
            ws = self._workspaces.get(wkey)
            if ws is None or ws.auth != auth or ws.identity != identity:
                ws = Workspace(auto.url, auto.branch, self.git_cache / key.namespace / key.name, auth, identity)
                ws.fence = functools.partial(self._fence, key.namespace)
                self._workspaces[wkey] = ws
        return ws

    def _git_auth(self, auto: flux.Automation) -> GitAuth | None:
        """The GitRepository's Secret as git needs it (the kit's one reading of Flux's formats): basic auth, or an
        SSH identity + known_hosts in files only this process reads."""
        if auto.credentials is None:
            return None
        where = self.secrets_dir / hashlib.sha256(f"{auto.source}\0{auto.url}".encode()).hexdigest()[:24]
        try:
            return flux_git_auth(auto.credentials, where)
        except KitError as exc:
            raise Failed(S.Reason.AUTHENTICATION_FAILED, f"{auto.source}.spec.secretRef: {exc}") from None

    # ------------------------------------------------------------------ writes
    def _write_status(self, key: ObjKey, obj: dict[str, Any], status: dict[str, Any], force: bool = False) -> bool:
        """Merge-patch the object's status; nothing is sent when it would change nothing (``force``: also when
        only the times moved — a scan or a run is news even when it found the same). True when written."""
        old = obj.get("status") or {}
        volatile = () if force else ("lastScanResult", "lastAutomationRunTime")
        if S.unchanged(old, status, volatile) or (not force and self._written.get(key) == status):
            return False
        self._fence(key.namespace)
        try:
            request_json(self.api, "PATCH", f"{key.path}/status", body={"status": status},
                         content_type="application/merge-patch+json", timeout=30)  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                log.warning("%s: status not written: HTTP %s", key, exc.status)
            return False
        self._written[key] = status
        return True

    def _event(self, obj: Mapping[str, Any], reason: str, message: str, type_: str, revision: str = "") -> None:
        """Record a core/v1 Event (best effort: one that cannot be written is logged, never fails the reconcile)."""
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        body = S.event(obj, reason, message, type_, REFLECTOR, revision=revision)
        try:
            self._fence(ns)
            request_json(self.api, "POST", f"/api/v1/namespaces/{ns}/events", body=body, timeout=10)
        except Exception as exc:
            log.debug("event not recorded: %s", exc)


def _annotations(obj: Mapping[str, Any]) -> Any:
    meta = obj.get("metadata")
    return meta.get("annotations") if isinstance(meta, Mapping) else None


@dataclass(frozen=True, slots=True)
class _OneClient:
    """The registry client of one ImageRepository's access, as the signature checker asks for it."""

    registry: RegistryClient

    def client(self, host: str) -> RegistryClient:
        return self.registry


@dataclass(frozen=True, slots=True)
class Pick:
    """An ImagePolicy's tag under imagebot's guards, and what its status says about a tag that waits."""

    tag: str
    digest: str  # a promotion's: exactly the source's ("" to read it as the policy's digestReflectionPolicy says)
    choice: P.Choice
    extras: fx.Extras
    current: str | None  # the latestRef's tag before this reconcile
    select: Callable[[list[str]], str | None]  # the same decision over fewer tags (the signature gate walks down it)

    @property
    def new(self) -> bool:
        """A tag of the policy's own choosing that it did not have: the one a signature gate must pass."""
        mine = not self.extras.promote_from and not self.extras.held  # a promotion or a pinned hold is not gated here
        return mine and self.choice.tag is not None and self.choice.tag != self.current

    @property
    def remaining(self) -> float:
        return self.choice.remaining

    def status(self, status: dict[str, Any], obj: Mapping[str, Any]) -> dict[str, Any]:
        """Flux's policy status, its Ready condition saying why a newer tag waits or was refused (Ready stays True
        while a tag waits: the latestRef is good; a refused downgrade is Ready=False)."""
        why = self.choice.why
        if why is None:
            return status
        message = f"{status['conditions'][0]['message']}; {self.choice.message}"
        return {**status, "conditions": S.conditions(obj, why is not P.Why.DOWNGRADE, str(why), message)}



def _credentials(creds: fs.RegistryCredentials | None) -> CredentialSource:
    """An ImageRepository's Secret credentials for its registry client (anonymous without)."""
    return NO_CREDENTIALS if creds is None else StaticCredentials(Credentials(creds.username, creds.password))
