"""`reconciler controller`: many apps declared as Kubernetes objects, one reconcile per app key.

- Apps are Flux Kustomizations (with their GitRepositories) and native Apps, read from shared informers (one
  list+watch per kind for the whole process). Every change enqueues that app's key on one WorkQueue; N workers
  reconcile keys concurrently; a failing app is requeued with its own backoff and touches nothing else.
- One reconcile: read the spec (invalid → Stalled, not retried until the spec changes), honour ``suspend``,
  wait for ``dependsOn`` apps to be Ready, check the app's Project, fetch the source (shared by every app on the
  same URL and ref: one fetch, one immutable snapshot per revision), run the engine's sync (render → plan →
  apply → prune) and write the status as Flux writes it (conditions, lastAppliedRevision in ``main@sha1:<sha>``
  form, inventory entries, lastHandledReconcileAt). Then requeue after the app's interval.
- Drift: one informer per managed kind (selected by the tracking label, across all apps) hands each event to a
  pool of drift workers (the newest event per object, one worker per object at a time); the engine of the app
  whose label it carries corrects or reports it as the one-app loop does.
- GitRepositories: each one's status is written as Flux's source-controller writes it (Ready at its artifact's
  revision, or the fetch's failure), from the fetch its apps share; each is also a key on the queue, fetched on its
  own interval and looked at again whenever a fetch of its source ends. A fetch (whoever made it) that finds a new
  revision wakes the apps reading that source (Flux's kustomize-controller follows its source's artifact): they
  apply that fetch's snapshot now, not at their own interval; the same revision again wakes none. A suspended
  one is not fetched nor written; its apps keep the snapshot they read; resumed, it is fetched at once.
- Sharding: without ``--shard`` the controller serves apps without a shard label; with ``--shard KEY`` only
  apps labelled ``sharding.imagebot.dev/key=KEY`` (Flux's sharding model).
"""

from __future__ import annotations

import base64
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gitopskit import fluxsecrets
from gitopskit.errors import GitError, GitFailure, KitError
from gitopskit.informer import ApiTransport, EventType, Informer, Key
from gitopskit.kube import request_json
from gitopskit.lease import LeaderElector
from gitopskit.notify import Emitter
from gitopskit.workqueue import Backoff, Controller, Result, WorkQueue
from gitopskit.workspace import GitAuth, flux_git_auth
from reconciler import apps as A
from reconciler import sourceignore
from reconciler.cluster import EventRecorder, KubeCluster
from reconciler.controller_cli import APP_PATH, ARGO_PATH, KS_PATH
from reconciler.engine import Engine, KeyFence, Settings
from reconciler.errors import ReconcilerError, SourceError, UsageError
from reconciler.health import object_health
from reconciler.model import TRACKING_LABEL, Action, Health, Manifest, ResourceKey
from reconciler.notices import AppNotices, object_ref
from reconciler.plan import PruneGuards
from reconciler.sharding import AutoShards
from reconciler.source import Source
from reconciler.transform import compose, flux_transform, top_level_only

log = logging.getLogger(__name__)

REPO_PATH = "/apis/source.toolkit.fluxcd.io/v1"
REPO_KIND = "GitRepository"  # an AppKey of this kind is a GitRepository: its reconcile writes the repository's status
ARGO_SECRET_TYPE = "argocd.argoproj.io/secret-type"
ARGO_ORDERING = ("argocd.argoproj.io/sync-wave", "argocd.argoproj.io/hook")  # reported, not run (yet)
APPLY_WORKERS = 4  # requests one app's sync has in flight at once
PREPARE_WAIT = 10.0  # seconds an app waits for the shared informers of its kinds before listing itself
# drift corrections in flight at once, across apps and objects. Each is an API round trip or two (the apply; the
# DriftCorrected Event goes to the background EventRecorder): handled on the informer's own thread, one event after
# the other with its Event, 100 drifts at once waited ~200 round trips in turn (issue 15's C3: p99 4 s for a target
# of 1 s). 8 keeps 100 drifts within ~13 round trips each (C3 p99 0.3-0.6 s, quiet); 16 halved that again but its
# threads, woken by every ADDED/MODIFIED of a cold start's 5,000 applies, cost C1 ~5 s of its 2 cores (A/B, one run)
DRIFT_WORKERS = 8
SOURCE_RETRY = 30.0  # seconds before an app whose GitRepository is missing looks again (its creation wakes it at once)


@dataclass(frozen=True, slots=True, order=True)
class AppKey:
    kind: str  # "Kustomization" | "App"
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def path(self) -> str:
        if self.kind == REPO_KIND:
            return f"{REPO_PATH}/namespaces/{self.namespace}/gitrepositories/{self.name}"
        plural = {A.Dialect.FLUX: (KS_PATH, "kustomizations"), A.Dialect.ARGO: (ARGO_PATH, "applications")}
        base, resource = plural.get(A.Dialect(self.kind), (APP_PATH, "apps"))
        return f"{base}/namespaces/{self.namespace}/{resource}/{self.name}"


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        labels = ["kind", "namespace", "name"]
        self.ready = Gauge("reconciler_app_ready", "1 when the app is Ready", labels, registry=r)
        self.reconciles = Counter("reconciler_app_reconciles_total", "App reconciles by result", [*labels, "result"], registry=r)
        self.duration = Histogram("reconciler_app_reconcile_seconds", "One app reconcile", registry=r)
        self.drift = Gauge("reconciler_app_drift_fields", "Drifted fields now", labels, registry=r)
        self.sources = Counter(
            "reconciler_gitrepository_reconciles_total", "GitRepository status passes by result", ["namespace", "name", "result"],
            registry=r,
        )  # fmt: skip


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class FetchPending(Exception):
    """The source is being fetched on its own thread; the app is woken (its key queued) when the fetch ends."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    root: Path  # an immutable copy of the tree at ``sha`` (Flux's artifact: ignored files left out)
    sha: str
    ref: str = ""  # the tag a semver range chose ("" otherwise)


class _Entry:
    """One source (URL, ref, credentials, ignore rules): the last snapshot, the fetch in flight, the answers owed
    to the apps that asked while it ran, and the apps that use it now."""

    def __init__(self, src: Source, auth: GitAuth | None) -> None:
        self.src, self.auth = src, auth
        self.at = 0.0
        self.snap: Snapshot | None = None
        self.running = False
        self.waiters: dict[Any, Callable[[], None]] = {}
        self.answers: dict[Any, Snapshot | BaseException] = {}
        self.users: set[Any] = set()
        self.told: set[Any] = set()  # users woken by a new revision: their next fetch reads ``snap``, whatever its age
        self.failures = 0  # consecutive failed fetches, the last one's time and error
        self.failed_at = 0.0
        self.error: BaseException | None = None


def _refetch_after(failures: int) -> float:
    """How long a failed source's error stands before the next fetch: 1 s doubling to 5 min, as the queue backs off.
    (A key's own backoff cannot space the fetches: the FetchPending of each new fetch ends that reconcile cleanly,
    which resets it — an app on a remote answering 401 or a redirect was fetched again every second, forever.)"""
    return min(300.0, 2.0 ** min(max(failures - 1, 0), 16))


class SourceCache:
    """One fetch per (URL, ref, credentials, ignore rules) at a time, shared by every app using it, and one
    immutable snapshot directory per revision, so an app renders a tree no other app's fetch can move under it.

    With a ``wake`` callback a fetch runs on its own thread and the caller gets :class:`FetchPending`: a
    repository that hangs (a silent server holds the connection until git's deadlines) holds no worker, so the
    apps on other repositories carry on; the caller asks again when woken and gets that fetch's answer.

    Snapshots no app references any more are deleted: a source's current snapshot, one a reconcile is reading
    (from ``fetch`` until ``release``), one owed to a waiting app and one being made are kept; an entry no app uses
    is dropped. The process that holds ``snapshots.lock`` (the first controller on this cache directory) also
    deletes snapshots left by earlier processes; another one deletes only those it made."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str, str], _Entry] = {}
        self._reading: dict[Any, Path] = {}  # who → the snapshot its reconcile reads
        self._making: dict[Path, int] = {}  # snapshots being made or handed over (not yet in an entry)
        self._made: set[str] = set()  # names of the snapshots this process made or used
        # told every fetch's end: the source's users, and those of them ``follows`` picks whose last revision (read,
        # or told of) is not the new one — they are marked to read the new snapshot, not to fetch again
        self.on_fetched: Callable[[set[Any], set[Any]], None] | None = None
        self.follows: Callable[[Any], bool] = lambda who: False
        self._read: dict[Any, str] = {}  # who → the revision it last read or was told of
        self._pinned: dict[Any, Snapshot] = {}  # who → the snapshot it keeps while its source is suspended
        self._seen: dict[Any, Snapshot] = {}  # who → the snapshot it last read (what a suspension pins it to)
        self.dir = root / "snapshots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._owner_fd: int | None = os.open(self.root / "snapshots.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._owner_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another process owns the directory: only our own snapshots are ours to delete
            os.close(self._owner_fd)
            self._owner_fd = None

    def close(self) -> None:
        if self._owner_fd is not None:
            os.close(self._owner_fd)  # the flock goes with it
            self._owner_fd = None

    def fetch(
        self, spec: A.SourceSpec, auth: GitAuth | None, max_age: float, who: Any, wake: Callable[[], None]
    ) -> Snapshot:
        """The snapshot when one younger than ``max_age`` seconds is at hand, or the answer of the fetch ``who``
        waited for; else FetchPending, and ``wake()`` once the fetch (started now if none is running) ends. The
        snapshot is ``who``'s to read until :meth:`release`. A suspended source is never fetched: ``who`` keeps the
        snapshot it has (SourceError when there is none yet)."""
        key = _source_key(spec)
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                e = self._entries[key] = _Entry(self._source(spec, auth), auth)
            for other in self._entries.values():  # an app uses one source at a time
                if other is not e:
                    other.users.discard(who)
                    other.told.discard(who)
            e.users.add(who)
            if spec.suspend:  # what it read last (kept while pinned), even when another source's fetch moved this one
                e.told.discard(who)
                e.answers.pop(who, None)
                e.waiters.pop(who, None)
                pinned = self._pinned.get(who)
                snap = pinned if pinned is not None and pinned.root.is_dir() else e.snap
                if snap is None:
                    where = f"GitRepository {spec.origin}" if spec.origin else spec.url
                    raise SourceError(f"{where} is suspended and has no artifact here yet: it is fetched when resumed")
                self._pinned[who], self._reading[who], self._read[who], self._seen[who] = snap, snap.root, snap.sha, snap
                return snap
            self._pinned.pop(who, None)
            told = who in e.told
            e.told.discard(who)
            if who in e.answers:
                got = e.answers.pop(who)
                if isinstance(got, BaseException):
                    raise got
                self._reading[who], self._read[who], self._seen[who] = got.root, got.sha, got
                return got
            # woken by a new revision: the snapshot that fetch made, not another fetch (a request still fetches)
            if e.snap is not None and (self.clock() - e.at < max_age or (told and max_age > 0)):
                self._reading[who], self._read[who], self._seen[who] = e.snap.root, e.snap.sha, e.snap
                return e.snap
            # the last fetch's failure stands until it is due again; a request (max_age 0) or a changed Secret fetches now
            if e.error is not None and max_age > 0 and auth == e.auth and self.clock() - e.failed_at < _refetch_after(e.failures):
                raise e.error.with_traceback(None)
            e.waiters[who] = wake
            if e.running:
                raise FetchPending(spec.url)
            e.running = True
            if auth != e.auth:  # the Secret changed (a password fixed or rotated): fetch with it as it is now
                e.src, e.auth = self._source(spec, auth), auth
        args = (e, spec.url, spec.ignore)
        threading.Thread(target=self._fetch, args=args, name=f"fetch {spec.url}", daemon=True).start()
        raise FetchPending(spec.url)

    def failure(self, spec: A.SourceSpec) -> BaseException | None:
        """The error of the source's last fetch when that one failed (None when it succeeded, or none ran)."""
        with self._lock:
            e = self._entries.get(_source_key(spec))
            return e.error if e is not None else None

    def _source(self, spec: A.SourceSpec, auth: GitAuth | None) -> Source:
        return Source(spec.url, spec.ref, "", cache=self.root / "git", auth=auth, kind=str(spec.ref_kind))

    def _fetch(self, e: _Entry, url: str, ignore: str | None) -> None:
        result: Snapshot | BaseException
        try:
            fetched = e.src.fetch(export=lambda f: self._snapshot(f.root, f.revision, url, ignore))
            result = Snapshot(fetched.root, fetched.revision, fetched.ref)
        except Exception as exc:  # handed to every app that waited for this fetch, as its own failure
            result = exc
        with self._lock:
            e.running = False
            if not isinstance(result, BaseException):
                e.at, e.snap = self.clock(), result
                e.failures, e.error = 0, None
            else:
                e.failures, e.failed_at, e.error = e.failures + 1, self.clock(), result
            waiters, e.waiters = e.waiters, {}
            for who in waiters:
                e.answers[who] = result
            if not isinstance(result, BaseException):
                self._unmark(result.root)
            users = set(e.users)
            # users other than the waiters (they get this answer) whose revision is not the new one
            behind = set() if isinstance(result, BaseException) else {
                u for u in users if u not in waiters and u not in self._pinned and self._read.get(u) != result.sha}  # fmt: skip
        for wake in waiters.values():
            wake()
        moved = {u for u in behind if self.follows(u)}  # (outside the lock: it asks the controller)
        if moved:
            assert isinstance(result, Snapshot)
            with self._lock:
                for u in moved & e.users:
                    e.told.add(u)
                    self._read[u] = result.sha  # told once: the same revision again wakes it no more
        if self.on_fetched is not None:
            self.on_fetched(users, moved)
        self.collect()

    def release(self, who: Any) -> None:
        """``who``'s reconcile no longer reads its snapshot."""
        with self._lock:
            done = self._reading.pop(who, None)
        if done is not None:
            self.collect()

    def pin(self, who: Any) -> None:
        """``who``'s GitRepository was just seen suspended: it keeps the snapshot it last read from now on, not the
        one the source holds at its next pass — another GitRepository on the same URL and ref may move that first."""
        with self._lock:
            seen = self._seen.get(who)
            if who not in self._pinned and seen is not None and seen.root.is_dir():
                self._pinned[who] = seen

    def abandon(self, who: Any) -> None:
        """``who`` waits for no fetch any more (its GitRepository was suspended): an answer owed to it would be
        taken, once resumed, for the fetch its resumption asks for — a snapshot from before the suspension."""
        with self._lock:
            for e in self._entries.values():
                e.answers.pop(who, None)
                e.waiters.pop(who, None)

    def forget(self, who: Any) -> None:
        with self._lock:
            self._read.pop(who, None)
            self._pinned.pop(who, None)
            self._seen.pop(who, None)
            for e in self._entries.values():
                e.answers.pop(who, None)
                e.waiters.pop(who, None)
                e.told.discard(who)
                e.users.discard(who)  # (a reconcile still in flight keeps reading its snapshot until release)
        self.collect()

    def invalidate(self) -> None:
        with self._lock:
            for e in self._entries.values():
                e.at, e.error = float("-inf"), None

    def _unmark(self, path: Path) -> None:
        n = self._making.get(path, 0) - 1
        if n > 0:
            self._making[path] = n
        else:
            self._making.pop(path, None)

    def collect(self) -> list[str]:
        """Delete the snapshots nothing references (see the class); the names deleted."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if not (e.users or e.running or e.waiters or e.answers)]:
                del self._entries[key]
            keep = {p.name for p in self._reading.values()} | {p.name for p in self._making}
            keep |= {s.root.name for s in self._pinned.values()}
            for e in self._entries.values():
                if e.snap is not None:
                    keep.add(e.snap.root.name)
                keep |= {a.root.name for a in e.answers.values() if isinstance(a, Snapshot)}
            gone = []
            for d in self.dir.iterdir() if self.dir.is_dir() else ():
                name = d.name
                if name in keep or name.startswith(".") or (self._owner_fd is None and name not in self._made):
                    continue
                trash = self.dir / f".trash-{name}"
                try:
                    os.rename(d, trash)  # out of every reader's way at once; removed outside the lock
                except OSError:
                    continue
                self._made.discard(name)
                gone.append(trash)
        for t in gone:
            shutil.rmtree(t, ignore_errors=True)
        if self._owner_fd is not None:  # an earlier process's interrupted copy or removal
            for d in self.dir.glob(".trash-*"):
                if d not in gone:
                    shutil.rmtree(d, ignore_errors=True)
        return [t.name.removeprefix(".trash-") for t in gone]

    def _snapshot(self, tree: Path, sha: str, url: str, ignore: str | None) -> Path:
        """An immutable copy of ``tree`` (a Flux source without the files its ignore rules exclude), made once
        per URL, revision and rules; marked as being made until the fetch hands it over."""
        name = f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{sha}"
        if ignore is not None:
            name += "-" + hashlib.sha256(f"flux\0{ignore}".encode()).hexdigest()[:12]
        dest = self.dir / name
        with self._lock:
            self._making[dest] = self._making.get(dest, 0) + 1
            self._made.add(name)
            if dest.is_dir():
                return dest
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=".tmp-"))
        try:
            shutil.copytree(tree, tmp / "t", symlinks=True, ignore=_ignored(tree, ignore))
            with self._lock:
                try:
                    os.rename(tmp / "t", dest)
                except OSError:
                    if not dest.is_dir():
                        raise
        except BaseException:
            with self._lock:
                self._unmark(dest)
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest


def _source_key(spec: A.SourceSpec) -> tuple[str, str, str, str]:
    """One fetch and snapshot per URL, ref, credentials (the Secret's name) and ignore rules."""
    ignore = "" if spec.ignore is None else hashlib.sha256(f"flux\0{spec.ignore}".encode()).hexdigest()[:12]
    return (spec.url, f"{spec.ref_kind}:{spec.ref}", str(spec.secret or ""), ignore)


def _ignored(tree: Path, ignore: str | None) -> Callable[[str, list[str]], set[str]]:
    """copytree's filter: ``.git`` always; for a Flux source also what its ignore rules exclude (an excluded
    directory is still walked when some pattern includes again, as Flux matches every file)."""
    if ignore is None:
        return lambda d, names: {".git"} & set(names)
    m = sourceignore.matcher(tree, ignore)
    walk_excluded = m.includes

    def skip(d: str, names: list[str]) -> set[str]:
        rel = Path(d).relative_to(tree).parts
        out = {".git"} & set(names)
        for n in names:
            p = Path(d) / n
            is_dir = p.is_dir() and not p.is_symlink()
            if m.excluded((*rel, n), is_dir) and not (is_dir and walk_excluded):
                out.add(n)
        return out

    return skip


class AppController:
    def __init__(
        self,
        api: Any,
        namespaces: tuple[str, ...] = (),
        shard: str = "",
        workers: int = 4,
        cache: Path | None = None,
        field_manager: str = "reconciler",
        clock: Callable[[], float] = time.monotonic,
        elector: LeaderElector | None = None,
        shards: AutoShards | None = None,
        no_cross_namespace_refs: bool = False,
        notifier: Emitter | None = None,
        failing_after: float = 600.0,
        drift_workers: int = DRIFT_WORKERS,
    ) -> None:
        self.api = api
        self.notices = AppNotices(notifier, failing_after)  # sync failed, health degraded/recovered, drift (through each engine)
        self.shards = shards
        # Flux's lockdown for multi-tenancy: an app may not use another namespace's GitRepository (and with it
        # that namespace's credentials) nor wait on another namespace's apps
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self._current = threading.local()  # the app a worker thread is writing for (the shards' fence)
        # with leader election, one replica per shard writes: the others keep their caches warm and wait
        self.elector = elector
        self.namespaces = namespaces
        self.shard = shard
        self.field_manager = field_manager
        self.cluster = KubeCluster(api, field_manager)
        # every engine's Events, written off the workers' threads — each only while this replica still owns its app
        # (the writer's thread is no app's: the shard fence of the write itself cannot tell)
        self.events = EventRecorder(self.cluster.event, owns=self._owns)
        self.fence = KeyFence()  # the objects syncs are deleting/recreating or pruned: no engine's drift path corrects them
        self.cluster.fence = elector.fence if elector is not None else self._fence_current if shards is not None else None
        self.metrics = Metrics()
        base = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagebot" / "controller"
        self.sources = SourceCache(base, clock)
        # a fetch an app made may be news for its GitRepository's status (the repository reads the same snapshot)
        self.sources.on_fetched = self._on_fetched
        self.sources.follows = self._follows
        self.secrets_dir = Path(tempfile.mkdtemp(prefix="reconciler-secrets-"))
        os.chmod(self.secrets_dir, stat.S_IRWXU)
        self.queue: WorkQueue[AppKey] = WorkQueue(backoff=Backoff(base=1.0, cap=300.0))
        self.controller: Controller[AppKey] = Controller("apps", self.reconcile, workers=workers, queue=self.queue)
        # managed objects' watch events, off the informers' threads: the newest event per object, not yet handled
        self._drift_events: dict[ResourceKey, _Pending] = {}
        self.drift_queue: WorkQueue[ResourceKey] = WorkQueue(backoff=Backoff(base=1.0, cap=60.0))
        self.drift = Controller("drift", self._drift_one, workers=drift_workers, queue=self.drift_queue)
        self.engines: dict[AppKey, tuple[Engine, A.AppSpec, A.ProjectSpec | None]] = {}
        self.by_label: dict[str, AppKey] = {}  # tracking label value → app
        self._written: dict[AppKey, tuple[int, dict[str, Any]]] = {}  # the last status written per app
        self._attempts: dict[AppKey, tuple[str, int, float]] = {}  # (revision, generation, start) awaiting health
        self._trying: dict[AppKey, str] = {}  # the revision a pass in flight attempts (its failure's lastAttemptedRevision)
        self._suspended: set[AppKey] = set()  # GitRepositories last seen suspended: resumed, they are fetched at once
        # (namespace, name) → the apps naming it as their GitRepository / in their dependsOn, kept by the informers' events
        self._index_lock = threading.Lock()
        self._by_source: dict[tuple[str, str], set[AppKey]] = {}
        self._source_of: dict[AppKey, set[tuple[str, str]]] = {}
        self._by_dependency: dict[tuple[str, str], set[AppKey]] = {}
        self._needs: dict[AppKey, set[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        transport = ApiTransport(api)
        selector = f"{A.SHARD_LABEL}={shard}" if shard else f"!{A.SHARD_LABEL}"
        scopes = [f"/namespaces/{ns}" for ns in namespaces] or [""]
        self.kustomizations = [Informer(transport, f"{KS_PATH}{s}/kustomizations", selector) for s in scopes]
        self.apps = [Informer(transport, f"{APP_PATH}{s}/apps", selector) for s in scopes]
        self.repos = [Informer(transport, f"{REPO_PATH}{s}/gitrepositories") for s in scopes]
        self.projects = Informer(transport, f"{APP_PATH}/projects")
        self.applications = [Informer(transport, f"{ARGO_PATH}{s}/applications", selector) for s in scopes]
        self.appprojects = [Informer(transport, f"{ARGO_PATH}{s}/appprojects") for s in scopes]
        self.drift_informers: dict[tuple[str, str], Informer] = {}
        self._started_at: dict[tuple[str, str], float] = {}  # when each drift informer was started
        for inf in self.kustomizations:
            inf.add_handler(self._on_app(A.Dialect.FLUX))
        for inf in self.apps:
            inf.add_handler(self._on_app(A.Dialect.NATIVE))
        for inf in self.applications:
            inf.add_handler(self._on_app(A.Dialect.ARGO))
        for inf in self.appprojects:
            inf.add_handler(lambda t, o, p: self._enqueue_all())
        for inf in self.repos:
            inf.add_handler(self._on_repo)
        self.projects.add_handler(lambda t, o, p: self._enqueue_all())

    # ------------------------------------------------------------------ lifecycle
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def mine(self, key: AppKey) -> bool:
        """Does this replica reconcile ``key`` now (leader of its shard, or holder of its slot)?"""
        return self.is_leader() and (self.shards is None or self.shards.owns(str(key)))

    def _owns(self, app: str) -> bool:
        """Does this replica write for the app named ``app`` (``str(AppKey)``) now: the Event writer's check."""
        return self.is_leader() and (self.shards is None or self.shards.owns(app))

    def _fence_current(self) -> None:
        key = getattr(self._current, "key", None)
        if self.shards is not None and key is not None:
            self.shards.fence(key)

    def _watch_leadership(self) -> None:
        """A replica that becomes leader looks at every app at once (its caches are warm): takeover within a
        lease duration, not an interval."""
        assert self.elector is not None
        was = False
        while not self._stop.wait(min(self.elector.timing.retry_period, 1.0)):
            now = self.elector.is_leader()
            if now and not was:
                self._enqueue_everything()
            was = now

    def start(self) -> None:
        if self.elector is not None:
            self.elector.start()
            threading.Thread(target=self._watch_leadership, name="leadership", daemon=True).start()
        if self.shards is not None:
            self.shards.on_change = self._enqueue_everything  # slots gained: their apps are looked at now
            self.shards.start()
        for inf in (*self.kustomizations, *self.apps, *self.repos, self.projects, *self.applications, *self.appprojects):
            inf.start(self._stop)
        self.drift.start()
        self.controller.start()

    def stop(self, timeout: float = 30.0) -> bool:
        self._stop.set()
        end = time.monotonic() + timeout
        done = self.controller.stop(timeout)
        done = self.drift.stop(max(end - time.monotonic(), 0.0)) and done
        self.events.close(max(end - time.monotonic(), 0.0))  # the Events recorded so far, within what is left
        if self.elector is not None:
            self.elector.stop(release=True)  # a clean handover: the next replica need not wait for expiry
        if self.shards is not None:
            self.shards.stop()
        shutil.rmtree(self.secrets_dir, ignore_errors=True)
        self.sources.close()
        return done

    def refresh(self) -> None:
        """A push webhook: every source is fetched again on its next use, and every app is looked at now."""
        self.sources.invalidate()
        self._enqueue_everything()

    def wait_synced(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        infs = (*self.kustomizations, *self.apps, *self.repos, *self.applications)
        return all(inf.wait_synced(max(end - time.monotonic(), 0)) for inf in infs)

    # ------------------------------------------------------------------ events → keys
    def _on_app(self, dialect: A.Dialect) -> Callable[[EventType, dict[str, Any], dict[str, Any] | None], None]:
        def handler(etype: EventType, obj: dict[str, Any], prev: dict[str, Any] | None) -> None:
            k = Key.of(obj)
            key = AppKey(str(dialect), k.namespace, k.name)
            self._index(key, None if etype is EventType.DELETED else obj)
            if etype is EventType.DELETED:
                self._forget(key)
                return
            if prev is not None and _generation(prev) == _generation(obj) and _requested(prev) == _requested(obj):
                if (obj.get("status") or {}).get("conditions") != (prev.get("status") or {}).get("conditions"):
                    self._enqueue_dependents(key)  # our own status write: wake the apps waiting on this one
                return
            self.queue.add(key)

        return handler

    def _on_repo(self, etype: EventType, obj: dict[str, Any], prev: dict[str, Any] | None) -> None:
        """A GitRepository's spec changed or it was deleted: every app naming it (a Kustomization, or an App's
        sourceRef, in any namespace) is looked at now, not at its next interval — and so is the repository's own
        status (also when a reconcile is requested of it, as `flux reconcile source git` does)."""
        k = Key.of(obj)
        repo = AppKey(REPO_KIND, k.namespace, k.name)
        if etype is EventType.DELETED:
            self._forget(repo)
        elif prev is None or _generation(prev) != _generation(obj) or _requested(prev) != _requested(obj):
            self.queue.add(repo)
        if etype is not EventType.DELETED and prev is not None and _generation(prev) == _generation(obj):
            return
        with self._index_lock:
            users = list(self._by_source.get((k.namespace, k.name), ()))
        if etype is not EventType.DELETED and isinstance(obj.get("spec"), dict) and obj["spec"].get("suspend") is True:
            for app in users:  # now, not at their next pass: a twin's fetch could move them first
                self.sources.pin(app)
        for app in users:
            self.queue.add(app)

    def _dialects(self) -> tuple[tuple[A.Dialect, list[Informer]], ...]:
        return ((A.Dialect.FLUX, self.kustomizations), (A.Dialect.NATIVE, self.apps), (A.Dialect.ARGO, self.applications))

    def _on_fetched(self, users: set[Any], moved: set[Any]) -> None:
        """A fetch ended: its GitRepositories look at it, and the apps it moved to a new revision apply it now (as
        Flux's kustomize-controller watches its source's artifact), not at their own interval."""
        for who in users:
            if isinstance(who, AppKey) and (who.kind == REPO_KIND or who in moved):
                self.queue.add(who)

    def _follows(self, who: Any) -> bool:
        """Does ``who`` (a user of a source that just moved) follow it now: a Flux Kustomization or App this
        replica serves, not suspended."""
        if not isinstance(who, AppKey) or who.kind not in (A.Dialect.FLUX, A.Dialect.NATIVE) or not self.mine(who):
            return False
        obj = self._object(who)
        return obj is not None and not (isinstance(obj.get("spec"), dict) and obj["spec"].get("suspend") is True)

    def _enqueue_everything(self) -> None:
        """Every app and every GitRepository (a refresh, a leadership or a shard gained)."""
        self._enqueue_all()
        for inf in self.repos:
            for k in inf.cached_keys():
                self.queue.add(AppKey(REPO_KIND, k.namespace, k.name))

    def _enqueue_all(self) -> None:
        for dialect, infs in self._dialects():
            for inf in infs:
                for k in inf.cached_keys():
                    self.queue.add(AppKey(str(dialect), k.namespace, k.name))

    def _enqueue_dependents(self, key: AppKey) -> None:
        with self._index_lock:
            waiting = list(self._by_dependency.get((key.namespace, key.name), ()))
        for app in waiting:
            self.queue.add(app)

    def _index(self, key: AppKey, obj: dict[str, Any] | None) -> None:
        """Keep the GitRepository → apps and app → dependents indexes at ``obj`` (None: deleted), so that a
        GitRepository's change or an app's status wakes the apps naming it without a scan over every app (each
        event of thousands of apps would scan them all)."""
        spec = obj.get("spec") if obj is not None else None
        spec = spec if isinstance(spec, dict) else {}
        ref = spec.get("sourceRef")
        source: set[tuple[str, str]] = set()
        if key.kind != A.Dialect.ARGO and isinstance(ref, dict) and isinstance(ref.get("name"), str):
            source.add((str(ref.get("namespace") or key.namespace), ref["name"]))
        deps = spec.get("dependsOn")
        needs = {(str(d.get("namespace") or key.namespace), d["name"]) for d in deps if isinstance(d, dict)
                 and isinstance(d.get("name"), str)} if isinstance(deps, list) else set()  # fmt: skip
        with self._index_lock:
            for index, of, targets in ((self._by_source, self._source_of, source), (self._by_dependency, self._needs, needs)):
                old = of.pop(key, set())
                for t in old - targets:
                    users = index.get(t)
                    if users is not None:
                        users.discard(key)
                        if not users:
                            del index[t]
                for t in targets - old:
                    index.setdefault(t, set()).add(key)
                if targets:
                    of[key] = targets

    def _forget(self, key: AppKey) -> None:
        self._written.pop(key, None)
        with self._lock:
            self._suspended.discard(key)
        if key.kind != REPO_KIND:  # (a GitRepository's subject would be the app's of the same name)
            self.notices.forget(_subject(key))
        self._attempts.pop(key, None)
        with self._lock:
            entry = self.engines.pop(key, None)
            if entry is not None:
                self.by_label.pop(entry[1].key, None)
        self.sources.forget(key)
        self.queue.forget(key)

    # ------------------------------------------------------------------ lookups
    def _object(self, key: AppKey) -> dict[str, Any] | None:
        infs = dict(self._dialects())[A.Dialect(key.kind)]
        for inf in infs:
            obj = inf.get(Key(key.namespace, key.name))
            if obj is not None:
                return obj
        return None

    def _repo(self, namespace: str, name: str) -> dict[str, Any] | None:
        for inf in self.repos:
            obj = inf.get(Key(namespace, name))
            if obj is not None:
                return obj
        return None

    def spec_of(self, key: AppKey, obj: dict[str, Any]) -> A.AppSpec:
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        ref = spec.get("sourceRef") if isinstance(spec, dict) and isinstance(spec.get("sourceRef"), dict) else None
        repo = None
        if self.no_cross_namespace_refs:
            refs = [("spec.sourceRef", ref)] if ref is not None else []
            deps = (spec or {}).get("dependsOn") or []
            refs += [(f"spec.dependsOn[{i}]", d) for i, d in enumerate(deps) if isinstance(d, dict)]
            for where, r in refs:
                if r.get("namespace") not in (None, "", key.namespace):
                    raise A.InvalidApp(f"{where} names namespace {r.get('namespace')}: cross-namespace references are "
                                       "not allowed (--no-cross-namespace-refs)")  # fmt: skip
        if ref is not None and isinstance(ref.get("name"), str):
            repo = self._repo(str(ref.get("namespace") or key.namespace), ref["name"])
        if key.kind == A.Dialect.FLUX:
            return A.from_kustomization(obj, repo)
        if key.kind == A.Dialect.ARGO:
            return A.from_application(obj)
        return A.from_app(obj, repo)

    # ------------------------------------------------------------------ one reconcile
    def reconcile(self, key: AppKey) -> Result | None:
        if not self.wait_synced(0):  # as /readyz: a GitRepository not listed yet is not "not found" (that was Stalled)
            return Result(requeue_after=0.2)
        if not self.mine(key):
            return None  # another replica's (or a standby's): gaining the lease or the slot enqueues every app
        self._current.key = str(key)
        try:
            return self._reconcile_repo(key) if key.kind == REPO_KIND else self._reconcile(key)
        finally:
            self._current.key = None
            self.sources.release(key)  # the snapshot it read may go now

    def _reconcile(self, key: AppKey) -> Result | None:
        obj = self._object(key)
        if obj is None:
            self._forget(key)
            return None
        t0 = time.perf_counter()
        labels = (key.kind, key.namespace, key.name)
        try:
            spec = self.spec_of(key, obj)
        except A.SourceNotFound as exc:
            # Flux: a source not there (yet) is ArtifactFailed and retried, never Stalled; its creation wakes the app
            # sooner (_on_repo). Told as a failure only when still missing at a retry, not on first sight
            told = ready_message(obj) == str(exc)
            self._fail(key, obj, None, A.Reason.ARTIFACT_FAILED, str(exc), notify=told)
            self.metrics.reconciles.labels(*labels, "failed").inc()
            return Result(requeue_after=SOURCE_RETRY)
        except A.InvalidApp as exc:
            self._fail(key, obj, None, A.Reason.INVALID, str(exc), stalled=True)
            self.metrics.reconciles.labels(*labels, "invalid").inc()
            return None  # nothing changes until the spec does (its update event enqueues it again)
        if spec.suspend:
            self.metrics.reconciles.labels(*labels, "suspended").inc()
            return None
        waiting = [str(d) for d in spec.depends_on if not self._ready(d)]
        if waiting:
            cycle = self._cycle(spec.ref)
            why = f"dependencies not ready: {', '.join(waiting)}"
            if cycle:
                why = f"dependency cycle: {' -> '.join(map(str, cycle))}"
            self._fail(key, obj, spec, A.Reason.DEPENDENCY_NOT_READY, why)
            return Result(requeue_after=min(spec.retry_interval, 30.0))
        try:
            try:
                outcome = self._run(key, obj, spec)
            finally:
                attempted = self._trying.pop(key, "")
                if self._object(key) is None:  # deleted meanwhile: drop the engine this run made (no ghost drift fixes)
                    self._forget(key)
        except FetchPending:
            return Result(pending=True)  # the fetch's end queues this key again; a failure's backoff stands
        except A.InvalidApp as exc:
            self._fail(key, obj, spec, A.Reason.INVALID, str(exc), stalled=True, attempted=attempted)
            self.metrics.reconciles.labels(*labels, "invalid").inc()
            return None
        except (_Denied, UsageError) as exc:
            self._fail(key, obj, spec, A.Reason.PROJECT_DENIED, str(exc), stalled=True)
            self.metrics.reconciles.labels(*labels, "denied").inc()
            return None
        except (ReconcilerError, SecretError) as exc:
            self._attempts.pop(key, None)
            reason = A.Reason.ARTIFACT_FAILED if isinstance(exc, (SourceError, SecretError)) else A.Reason.FAILED
            if isinstance(exc, SourceError) and not spec.source.suspend:  # (suspended: no peer was asked)
                self.notices.peer(f"git {spec.source.url}", str(exc))
            self._fail(key, obj, spec, reason, str(exc), attempted=attempted)
            self.metrics.ready.labels(*labels).set(0)
            self.metrics.reconciles.labels(*labels, "failed").inc()
            raise  # requeued with this key's own backoff
        self._write_status(key, obj, self._status_of(key, obj, spec, outcome))
        self.notices.peer(f"git {spec.source.url}", None)
        self.notices.synced(_subject(key), outcome.health, outcome.revision, object_ref(obj))
        self.metrics.ready.labels(*labels).set(1 if outcome.ready else 0)
        self.metrics.drift.labels(*labels).set(outcome.drift)
        self.metrics.reconciles.labels(*labels, "ok" if outcome.applied else "compared").inc()
        self.metrics.duration.observe(time.perf_counter() - t0)
        log.info("%s at %s: %s", key, outcome.revision, outcome.summary)
        if outcome.progressing:  # an object's health change wakes it sooner
            return Result(requeue_after=min(5.0, max(outcome.remaining, 0.5)))
        return Result(requeue_after=spec.interval if outcome.ready else spec.retry_interval)

    def _reconcile_repo(self, key: AppKey) -> Result | None:
        """A GitRepository's status as Flux's source-controller writes it, from the fetch its apps share (one
        fetch per source and interval, whoever asks): Ready with the artifact's revision, or the fetch's failure.
        Served by the controller of its shard label, as in Flux; written only when something changed."""
        obj = self._repo(key.namespace, key.name)
        if obj is None:
            self._forget(key)
            return None
        if str(((obj.get("metadata") or {}).get("labels") or {}).get(A.SHARD_LABEL) or "") != self.shard:
            return None  # another shard's controller writes it
        if isinstance(obj.get("spec"), dict) and obj["spec"].get("suspend") is True:
            # as Flux's source-controller: not fetched, status left as it is (Ready too), not requeued — resuming
            # it (a spec change) queues it again
            with self._lock:
                self._suspended.add(key)
            self.sources.abandon(key)  # a fetch it started before: its answer is not the one resuming asks for
            self.metrics.sources.labels(key.namespace, key.name, "suspended").inc()
            return None
        with self._lock:
            resumed = key in self._suspended
            self._suspended.discard(key)
        requested = _requested(obj)
        handled = {"lastHandledReconcileAt": requested} if requested else {}
        try:
            src = A.git_source(obj)
        except A.InvalidApp as exc:
            self._write_status(key, obj, _flux_status(obj, False, A.Reason.INVALID, str(exc), True, handled))
            self.metrics.sources.labels(key.namespace, key.name, "invalid").inc()
            return None  # nothing changes until the spec does
        old = obj.get("status") or {}
        fresh = 0.0 if resumed or (requested and requested != old.get("lastHandledReconcileAt")) else src.interval
        snap: Snapshot | None = None
        try:
            snap = self.sources.fetch(src, self._auth(src), fresh, key, lambda: self.queue.add(key))
            error = self.sources.failure(src)  # a later fetch (an app's) failed: the snapshot is no longer current
        except FetchPending:
            return Result(pending=True)  # the fetch's end queues this key again; a failure's backoff stands
        except ReconcilerError as exc:
            error = exc
        self._write_status(key, obj, _repo_status(obj, src, snap, error, handled))
        self.metrics.sources.labels(key.namespace, key.name, "ready" if error is None else "failed").inc()
        return Result(requeue_after=src.interval if error is None else min(src.interval, SOURCE_RETRY))

    def _run(self, key: AppKey, obj: dict[str, Any], spec: A.AppSpec) -> Outcome:
        """Fetch, then sync — or, for an Argo CD app that may not sync now, only compare."""
        project = self._project(key, spec)
        if project is not None and (why := A.source_violation(project, spec.source.url)):
            raise _Denied(why)
        if key.kind == A.Dialect.ARGO:
            auth = self._argo_auth(key.namespace, spec.source.url)
        else:  # (a suspended source is not fetched: its Secret is not needed)
            auth = None if spec.source.suspend else self._auth(spec.source)
        requested = bool(spec.requested_at) and spec.requested_at != (obj.get("status") or {}).get("lastHandledReconcileAt")
        operation = key.kind == A.Dialect.ARGO and isinstance(obj.get("operation"), dict)
        fresh = 0.0 if requested or operation else min(spec.source.interval, spec.interval)
        snap = self.sources.fetch(spec.source, auth, fresh, key, lambda: self.queue.add(key))
        root, sha = snap.root, snap.sha
        revision = A.flux_revision(spec.source.ref_kind, snap.ref or spec.source.ref, sha) if key.kind != A.Dialect.ARGO else sha
        self._trying[key] = revision
        app_root = (root / spec.path).resolve()
        if root.resolve() not in (app_root, *app_root.parents) or not app_root.is_dir():
            raise A.InvalidApp(f"spec.path {spec.path!r}: no such directory in {revision}")
        if (app_root / "Chart.yaml").is_file():
            raise A.InvalidApp(f"{spec.path or '.'} is a Helm chart: Helm sources are not supported")
        engine = self._engine(key, spec, project)
        started = _now()
        last_synced = (((obj.get("status") or {}).get("operationState") or {}).get("syncResult") or {}).get("revision")
        apply = (
            key.kind != A.Dialect.ARGO
            or requested
            or operation
            or (spec.auto_sync and (spec.self_heal or last_synced != sha))
        )
        if not apply:  # compare only: the watch reports drift against what Git holds now
            items, health = engine.compare(app_root, sha)
            out_of_sync = {i.key for i in items}
            return Outcome(
                revision, False, not out_of_sync, health, len(items), self._resources(engine, out_of_sync), started,
                f"compared: {len(out_of_sync)} object(s) out of sync", requested, operation, drifted=_records(items),
            )  # fmt: skip
        if spec.create_namespace and engine.s.default_namespace:
            self.cluster.apply(_namespace(engine.s.default_namespace), force=False)
        # Flux's spec.timeout bounds this pass's apply and, with spec.wait, the wait for health, counted from the
        # first pass at this revision and generation (the wait spans passes: no worker sleeps on it)
        t0 = self._attempt_start(key, revision, _generation(obj))
        timed = key.kind != A.Dialect.ARGO
        report = engine.sync(app_root, sha, prune=spec.prune, deadline=time.monotonic() + spec.timeout if timed else None)
        healthy = report.health is Health.HEALTHY or not spec.wait
        conflicts = report.plan.conflicts
        self._ensure_drift_watch(engine)
        waves = sorted({f"{m.key}: {a}" for m in engine.desired.values() for a in ARGO_ORDERING
                        if a in ((m.body.get("metadata") or {}).get("annotations") or {})})  # fmt: skip
        resources = self._resources(engine, {a.key for a in conflicts}, list(report.resources))
        waiting = tuple(f"{r['kind']}/{r['namespace'] + '/' if r['namespace'] else ''}{r['name']} status: "
                        f"'{r['health']['status']}'"
                        for r in resources if r["health"]["status"] != str(Health.HEALTHY))  # fmt: skip
        # spec.wait: not Healthy yet is Progressing (Ready Unknown) until the timeout, then HealthCheckFailed
        progressing = spec.wait and not healthy and not conflicts and time.monotonic() - t0 < spec.timeout
        if not progressing:
            self._attempts.pop(key, None)  # the next attempt (a retry, a new revision) has a deadline of its own
        return Outcome(
            revision, True, healthy and not conflicts, report.health, len(engine.drift),
            resources + self._kept(engine, [a.key for a in report.plan.prunes if a.action is Action.SKIP_PRUNE]),
            started, ", ".join(f"{v} {k}" for k, v in sorted(report.counts().items())) or "nothing to do", requested,
            operation, tuple(f"{a.key}: {a.reason}" for a in conflicts),
            tuple(f"{w} is not honoured: applied in one pass with the rest" for w in waves[:20]),
            report.api_writes > 0, _records(list(engine.drift.values())), report.seconds, waiting if spec.wait else (),
            progressing,
            max(spec.timeout - (time.monotonic() - t0), 0.0),
        )  # fmt: skip

    def _attempt_start(self, key: AppKey, revision: str, generation: int) -> float:
        """When the current attempt at (revision, generation) began (now, for a new one)."""
        with self._lock:
            got = self._attempts.get(key)
            if got is None or got[:2] != (revision, generation):
                got = self._attempts[key] = (revision, generation, time.monotonic())
        return got[2]

    def _resources(
        self, engine: Engine, out_of_sync: set[Any], health: list[tuple[ResourceKey, Health, str]] | None = None
    ) -> list[dict[str, Any]]:
        """Each declared object's entry (Argo CD's ``status.resources``, Flux's inventory): with the health the
        sync left it in, else read now (the cache when the informers hold it)."""
        return [
            {"group": k.group, "version": engine.desired[k].api_version.split("/")[-1], "kind": k.kind,
             "namespace": k.namespace, "name": k.name, "status": "OutOfSync" if k in out_of_sync else "Synced",
             "health": {"status": str(h)}, **({"message": why} if why and h is not Health.HEALTHY else {})}
            for k, h, why in sorted(engine.health_report(False) if health is None else health, key=lambda t: t[0])
        ]  # fmt: skip

    def _kept(self, engine: Engine, keys: list[ResourceKey]) -> list[dict[str, Any]]:
        """Objects that left Git but were kept (prune off, protected, opted out): out of sync, awaiting a prune."""
        entries = engine.inventory.entries if engine.inventory is not None else {}
        return [
            {"group": k.group, "version": entries.get(k, "").split("/")[-1], "kind": k.kind, "namespace": k.namespace,
             "name": k.name, "status": "OutOfSync", "requiresPruning": True}
            for k in sorted(keys)
        ]  # fmt: skip

    def _status_of(self, key: AppKey, obj: dict[str, Any], spec: A.AppSpec, o: Outcome) -> dict[str, Any]:
        if key.kind == A.Dialect.ARGO:
            return _argo_status(obj, spec, o)
        entries = [
            {"id": A.inventory_id(r["group"], r["kind"], r["namespace"], r["name"]), "v": r["version"]}
            for r in o.resources
        ]
        message = f"Applied revision: {o.revision}"
        if spec.unsupported:
            message += f"; not supported, ignored: {', '.join(spec.unsupported)}"
        if o.problems:
            message += "; not applied, owned by another app: " + "; ".join(o.problems[:5])
        elif o.progressing:
            message = f"Reconciliation in progress: applied revision {o.revision}, waiting for: [{', '.join(o.waiting[:10])}]"
        elif o.waiting:  # spec.wait, past spec.timeout
            message += f"; Health check failed after {spec.timeout:g}s: timeout waiting for: [{', '.join(o.waiting[:10])}]"
        elif not o.ready:
            message += f"; health {o.health}"
        reason = A.Reason.SUCCEEDED if o.ready else A.Reason.CONFLICT if o.problems else A.Reason.HEALTH_CHECK_FAILED
        if o.progressing:
            reason = A.Reason.PROGRESSING
        extra = {
            "lastAppliedRevision": o.revision,
            "lastAttemptedRevision": o.revision,
            "inventory": {"entries": entries},
            "health": str(o.health),
            "driftCount": o.drift,
            "drift": list(o.drifted),
            **self._handled(spec),
        }
        old = obj.get("status") or {}
        if o.applied:
            entry = {"revision": o.revision, "startedAt": o.started, "finishedAt": _now(), "duration": f"{o.seconds:.2f}s",
                     "result": str(reason), "changes": o.summary}  # fmt: skip
            extra["history"] = _history(old.get("history"), entry, o.changed or o.requested, spec.history_limit)
        return _flux_status(obj, None if o.progressing else o.ready, reason, message, False, extra, reconciling=o.progressing)

    def _fail(
        self,
        key: AppKey,
        obj: dict[str, Any],
        spec: A.AppSpec | None,
        reason: A.Reason,
        message: str,
        stalled: bool = False,
        notify: bool = True,
        attempted: str = "",
    ) -> None:
        """``attempted``: the revision the failed pass fetched (Flux's lastAttemptedRevision; "" when none was)."""
        if key.kind == A.Dialect.ARGO:
            status = _argo_failure(obj, reason, message)
        else:
            handled = self._handled(spec) if spec else {"lastHandledReconcileAt": _requested(obj)} if _requested(obj) else {}
            if attempted:
                handled["lastAttemptedRevision"] = attempted
            status = _flux_status(obj, False, reason, message, stalled, handled)
        self._write_status(key, obj, status)
        if notify and reason is not A.Reason.DEPENDENCY_NOT_READY:  # waiting on another app is not a failure of this one
            self.notices.failed(_subject(key), f"{reason}: {message}", object_ref(obj))

    def _handled(self, spec: A.AppSpec) -> dict[str, Any]:
        return {"lastHandledReconcileAt": spec.requested_at} if spec.requested_at else {}

    def _depends_of(self, ref: A.ObjectRef) -> list[A.ObjectRef]:
        for kind in (A.Dialect.FLUX, A.Dialect.NATIVE):
            obj = self._object(AppKey(str(kind), ref.namespace, ref.name))
            if obj is not None:
                deps = (obj.get("spec") or {}).get("dependsOn") if isinstance(obj.get("spec"), dict) else None
                return [A.ObjectRef(str(d.get("namespace") or ref.namespace), d["name"]) for d in deps or []
                        if isinstance(d, dict) and isinstance(d.get("name"), str)]  # fmt: skip
        return []

    def _cycle(self, start: A.ObjectRef) -> list[A.ObjectRef]:
        """The dependsOn path from ``start`` back to itself (a -> b -> a, or a -> a), [] when there is none: such
        apps would wait for each other forever, so their message names the cycle."""
        path: list[A.ObjectRef] = [start]
        seen: set[A.ObjectRef] = set()

        def walk(ref: A.ObjectRef) -> bool:
            for d in self._depends_of(ref):
                if d == start:
                    path.append(d)
                    return True
                if d in seen or len(seen) > 200:  # a bounded walk (and recursion)
                    continue
                seen.add(d)
                path.append(d)
                if walk(d):
                    return True
                path.pop()
            return False

        return path if walk(start) else []

    def _ready(self, ref: A.ObjectRef) -> bool:
        for kind in (A.Dialect.FLUX, A.Dialect.NATIVE):
            obj = self._object(AppKey(str(kind), ref.namespace, ref.name))
            if obj is None:
                continue
            st = obj.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
            return ready and st.get("observedGeneration") == _generation(obj)
        return False

    def _project(self, key: AppKey, spec: A.AppSpec) -> A.ProjectSpec | None:
        """The app's Project (cluster-scoped) — or, for an Argo CD Application, the AppProject of that name in its
        namespace; Argo CD's implicit ``default`` project allows everything until an AppProject says otherwise."""
        if not spec.project:
            return None
        if key.kind == A.Dialect.ARGO:
            obj = next((o for inf in self.appprojects if (o := inf.get(Key(key.namespace, spec.project)))), None)
            if obj is None and spec.project == "default":
                return None
            parse = A.argo_project_from
        else:
            obj, parse = self.projects.get(Key("", spec.project)), A.project_from
        if obj is None:
            raise _Denied(f"project {spec.project} not found")
        try:
            return parse(obj)
        except A.InvalidApp as exc:
            raise _Denied(f"project {spec.project} is invalid: {exc}") from None

    def _auth(self, source: A.SourceSpec) -> GitAuth | None:
        """Flux's Git Secret formats (the kit's parser): username/password over HTTPS, identity + known_hosts
        over SSH, or ``bearerToken`` over HTTP(S) (an ``Authorization: Bearer`` header scoped to the URL's origin)."""
        if source.secret is None:
            return None
        ref = source.secret
        try:
            secret = request_json(self.api, "GET", f"/api/v1/namespaces/{ref.namespace}/secrets/{ref.name}", timeout=30)
        except ApiException as exc:
            raise SecretError(f"Secret {ref} {'not found' if exc.status == 404 else f'unreadable (HTTP {exc.status})'}") from None
        return self._auth_from(secret, source.url)

    def _auth_from(self, obj: dict[str, Any], url: str) -> GitAuth | None:
        try:
            secret = fluxsecrets.secret_from_object(obj)
            creds = fluxsecrets.git_credentials(secret, url)
        except KitError as exc:  # the message names the Secret and the key, never a value
            raise SecretError(str(exc)) from None
        try:  # basic auth, a bearer token (both scoped to the URL's origin), or an SSH identity written 0600
            return flux_git_auth(creds, self.secrets_dir / secret.ref.replace("/", "."))
        except GitError as exc:
            raise SecretError(f"Secret {secret.ref}: {exc}") from None

    def _argo_auth(self, namespace: str, url: str) -> GitAuth | None:
        """Argo CD's declarative repository credentials: a Secret labelled
        ``argocd.argoproj.io/secret-type: repository`` whose ``url`` is the repoURL, else the longest
        ``repo-creds`` ``url`` prefix of it (username/password, or sshPrivateKey)."""
        path = f"/api/v1/namespaces/{namespace}/secrets"
        best: tuple[int, dict[str, Any]] | None = None
        for kind, exact in (("repository", True), ("repo-creds", False)):
            try:
                found = request_json(self.api, "GET", path, [("labelSelector", f"{ARGO_SECRET_TYPE}={kind}")], timeout=30)
            except ApiException as exc:
                raise SecretError(f"repository Secrets in {namespace} unreadable (HTTP {exc.status})") from None
            for sec in (found or {}).get("items") or []:
                try:
                    want = base64.b64decode((sec.get("data") or {}).get("url", ""), validate=True).decode()
                except (ValueError, UnicodeDecodeError):
                    continue
                if (want == url if exact else url.startswith(want)) and want and (best is None or len(want) > best[0]):
                    best = (len(want) + (1 << 20 if exact else 0), sec)
        if best is None:
            return None
        sec = best[1]
        data = {k: v for k, v in (sec.get("data") or {}).items() if k in ("username", "password", "sshPrivateKey")}
        if "sshPrivateKey" in data:  # Argo CD keeps known hosts in a ConfigMap: the Secret must carry them here
            data = {"identity": data["sshPrivateKey"], **({"known_hosts": sec["data"]["known_hosts"]}
                                                          if "known_hosts" in (sec.get("data") or {}) else {})}  # fmt: skip
        return self._auth_from({**sec, "data": data}, url)

    def _engine(self, key: AppKey, spec: A.AppSpec, project: A.ProjectSpec | None) -> Engine:
        default_ns = spec.default_namespace or (key.namespace if spec.dialect is A.Dialect.NATIVE else "default")
        settings = Settings(
            app=spec.key,
            default_namespace=default_ns,
            inventory_namespace=key.namespace,
            allowed_namespaces=frozenset(spec.allowed_namespaces) if spec.allowed_namespaces is not None else None,
            allowed_cluster_kinds=frozenset(spec.allow_cluster_kinds or ()),
            allow_cluster_scoped=True,
            guards=PruneGuards(spec.prune, spec.allow_empty, spec.force_prune, allowed_kinds=frozenset(spec.allow_prune_kinds)),
            rules=A.rules_for(spec.drift),
            workers=APPLY_WORKERS,
            admit=_project_check(project) if project is not None else None,
            target_namespace=spec.target_namespace,
            force=spec.force,
            transform=compose(
                None if spec.recurse else top_level_only,
                flux_transform(spec.images, spec.common_labels, spec.common_annotations, spec.patches),
            ),
        )
        with self._lock:
            entry = self.engines.get(key)
            same = entry is not None and entry[0].s == settings and entry[2] == project
            if entry is not None and same and entry[1] == replace(spec, requested_at=entry[1].requested_at):
                return entry[0]
            engine = Engine(self.cluster, settings)
            engine.live_cache = self._live_cache
            engine.notices, engine.subject = self.notices, _subject(key)
            engine.record_event = functools.partial(self.events.record, app=str(key))
            engine.fence = self.fence
            engine.prepare = self._prepare
            engine.lookup = self._lookup
            if entry is not None:  # keep what the old engine knew: the watch compares against it until the sync
                engine.desired, engine.revision = entry[0].desired, entry[0].revision
            self.engines[key] = (engine, spec, project)
            self.by_label[spec.key] = key
        return engine

    # ------------------------------------------------------------------ drift
    def _ensure_drift_watch(self, engine: Engine) -> None:
        self._watch_kinds({(m.api_version, m.kind) for m in engine.desired.values()})

    def _prepare(self, desired: list[Manifest]) -> None:
        """Before an app reads its live state: the shared informers of its kinds are started, and waited for until
        ``PREPARE_WAIT`` after their start, so that it reads them — not one list per kind and app, each returning
        every other app's objects too. An informer not synced by then is not waited for again (the engine lists)."""
        for kind, inf in self._watch_kinds({(m.api_version, m.kind) for m in desired}).items():
            inf.wait_synced(max(self._started_at.get(kind, 0.0) + PREPARE_WAIT - time.monotonic(), 0.0))

    def _watch_kinds(self, kinds: set[tuple[str, str]]) -> dict[tuple[str, str], Informer]:
        """The drift informer of each served kind, started once for the whole process."""
        out = {}
        for api_version, kind in sorted(kinds):
            with self._lock:
                inf = self.drift_informers.get((api_version, kind))
                if inf is not None:
                    out[(api_version, kind)] = inf
                    continue
                try:
                    res = self.cluster.resource(api_version, kind)
                except ReconcilerError:
                    continue
                prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
                inf = Informer(ApiTransport(self.api), f"{prefix}/{res.name}", TRACKING_LABEL, index=_tracked_by)
                inf.add_handler(self._on_managed)
                self.drift_informers[(api_version, kind)] = inf
                self._started_at[(api_version, kind)] = time.monotonic()
            inf.start(self._stop)
            out[(api_version, kind)] = inf
        return out

    def _live_cache(
        self, api_version: str, kind: str, selector: str, namespace: str | None
    ) -> dict[ResourceKey, dict[str, Any]] | None:
        """An app's live objects of one kind (``selector``: the tracking label = the app) from the shared informer
        (None until it has synced): a resync reads the cache, not the API server."""
        with self._lock:
            inf = self.drift_informers.get((api_version, kind))
        if inf is None or not inf.has_synced():
            return None
        label, _, value = selector.partition("=")
        if label != TRACKING_LABEL or not value:  # the informer is indexed by this label's value, nothing else
            return None
        group = api_version.split("/")[0] if "/" in api_version else ""
        out = {}
        for obj in inf.indexed(value, namespace):
            meta = obj.get("metadata") or {}
            out[ResourceKey(group, kind, meta.get("namespace") or "", meta.get("name", ""))] = obj
        return out

    def _lookup(
        self, api_version: str, kind: str, label: str, keys: list[ResourceKey]
    ) -> dict[ResourceKey, dict[str, Any]] | None:
        """Those of ``keys`` the shared informer holds (every object carrying the tracking label, whoever's), None
        until it has synced: who else claims an object, without a list of everyone's objects."""
        with self._lock:
            inf = self.drift_informers.get((api_version, kind))
        if inf is None or not inf.has_synced() or label != TRACKING_LABEL:
            return None
        return {k: obj for k in keys if (obj := inf.get(Key(k.namespace, k.name))) is not None}

    def _on_managed(self, etype: EventType, obj: dict[str, Any], prev: dict[str, Any] | None) -> None:
        """A managed object's watch event, on its informer's thread: kept for the drift workers (events of one
        object still waiting collapse into the newest, with the oldest ``prev`` and receipt time) — never handled
        here, where each correction's round trips would hold up every other object of the kind."""
        meta = obj.get("metadata") or {}
        api = str(obj.get("apiVersion") or "")
        key = ResourceKey(api.split("/")[0] if "/" in api else "", str(obj.get("kind") or ""),
                          meta.get("namespace") or "", meta.get("name") or "")  # fmt: skip
        with self._lock:
            waiting = self._drift_events.get(key)
            self._drift_events[key] = _Pending(
                etype, obj, waiting.prev if waiting else prev, waiting.received if waiting else time.monotonic()
            )
        self.drift_queue.add(key)

    def _drift_one(self, key: ResourceKey) -> None:
        """A drift worker: the newest event of one object, handed to the engine of the app whose label it
        carries (no other worker holds this object meanwhile: the queue hands a key to one worker at a time)."""
        with self._lock:
            ev = self._drift_events.pop(key, None)
        if ev is None:
            return
        etype, obj, prev = ev.etype, ev.obj, ev.prev
        app = ((obj.get("metadata") or {}).get("labels") or {}).get(TRACKING_LABEL)
        with self._lock:
            app_key = self.by_label.get(app or "")
            entry = self.engines.get(app_key) if app_key is not None else None
        if entry is None or app_key is None:
            return
        engine, spec, _ = entry
        if spec.suspend or not self.mine(app_key):
            return
        correct = spec.drift.mode == "correct" and spec.self_heal and spec.auto_sync
        self._current.key = str(app_key)
        try:
            items = engine.on_event(str(etype), obj, ev.received, correct=correct)
        except ReconcilerError as exc:
            log.error("%s: could not correct drift: %s", app_key, exc)
            return
        finally:
            self._current.key = None
        if items and not correct:
            self.queue.add(app_key)  # reported, not corrected: the app's status says OutOfSync
        elif prev is not None and object_health(obj.get("kind") or "", obj) != object_health(obj.get("kind") or "", prev):
            self.queue.add(app_key)  # an object's health moved (a rollout finished): the app's health is news

    # ------------------------------------------------------------------ status
    def _write_status(self, key: AppKey, obj: dict[str, Any], status: dict[str, Any]) -> None:
        old = obj.get("status") or {}
        same = {k: v for k, v in status.items() if k != "reconciledAt"}
        if all(old.get(k) == v for k, v in same.items()) or self._written.get(key) == (_generation(obj), same):
            # nothing new: no write (a second pass with nothing new does nothing) — also when the informer has not
            # yet brought back the status this process wrote last
            return
        if self.elector is not None:
            self.elector.fence()
        if self.shards is not None:
            self.shards.fence(str(key))
        try:  # a merge patch replaces lists whole: a Stalled condition not given again is gone
            request_json(
                self.api, "PATCH", f"{key.path}/status", body={"status": status}, content_type="application/merge-patch+json"
            )
            self._written[key] = (_generation(obj), same)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("%s: status not written: HTTP %s", key, exc.status)
        if key.kind == A.Dialect.ARGO and isinstance(obj.get("operation"), dict):
            try:  # Argo CD's manual sync request is done: clear it as Argo CD's controller does
                request_json(self.api, "PATCH", key.path, body={"operation": None}, content_type="application/merge-patch+json")
            except ApiException as exc:
                log.warning("%s: operation not cleared: HTTP %s", key, exc.status)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A managed object's newest watch event awaiting a drift worker."""

    etype: EventType
    obj: dict[str, Any]
    prev: dict[str, Any] | None  # the object before the oldest of the events it stands for
    received: float  # when the oldest of them arrived (the correction's latency counts from there)


@dataclass(frozen=True, slots=True)
class Outcome:
    revision: str
    applied: bool
    ready: bool  # Flux: Ready; Argo CD: Synced (and, when applied, healthy enough)
    health: Health
    drift: int
    resources: list[dict[str, Any]]
    started: str
    summary: str
    requested: bool
    operation: bool
    problems: tuple[str, ...] = ()  # ownership conflicts, each naming the other app
    notes: tuple[str, ...] = ()  # what the app's objects ask for that we do not do (Argo CD's waves and hooks)
    changed: bool = True  # the sync wrote to the cluster (created, updated or pruned)
    drifted: tuple[dict[str, Any], ...] = ()  # the drift left after the sync (reported or ignored), as DriftItem.record
    seconds: float = 0.0  # how long the sync took
    waiting: tuple[str, ...] = ()  # spec.wait: the objects not Healthy yet ("Kind/ns/name status: 'Progressing'")
    progressing: bool = False  # spec.wait, not Healthy, within spec.timeout: Ready Unknown, looked at again soon
    remaining: float = 0.0  # of spec.timeout


def _flux_status(
    obj: dict[str, Any],
    ready: bool | None,
    reason: A.Reason,
    message: str,
    stalled: bool,
    extra: dict[str, Any],
    reconciling: bool = False,
) -> dict[str, Any]:
    gen, now = _generation(obj), _now()
    conds = [A.condition("Ready", ready, str(reason), message, gen, now)]
    if stalled:
        conds.append(A.condition("Stalled", True, str(reason), message, gen, now))
    if reconciling:  # kstatus reads it as in progress
        conds.append(A.condition("Reconciling", True, str(reason), message, gen, now))
    old = (obj.get("status") or {}).get("conditions") or []
    return {**extra, "observedGeneration": gen, "conditions": A.merge_conditions(old, conds)}


def _repo_status(
    obj: dict[str, Any], src: A.SourceSpec, snap: Snapshot | None, error: BaseException | None, extra: dict[str, Any]
) -> dict[str, Any]:
    """A GitRepository's status, Flux's source-controller's fields that mean something here: ``Ready`` (Succeeded,
    "stored artifact for revision '<ref>@sha1:<sha>'"), ``ArtifactInStorage``, ``FetchFailed`` while the last fetch
    failed (AuthenticationFailed or GitOperationFailed, the fetch's message), ``artifact.revision`` and its
    ``lastUpdateTime`` (when the revision last changed). A failure keeps the last artifact, as Flux does."""
    gen, now = _generation(obj), _now()
    old = obj.get("status") or {}
    before: dict[str, Any] = old["artifact"] if isinstance(old.get("artifact"), dict) else {}
    status: dict[str, Any] = {**extra, "observedGeneration": gen}
    if error is None and snap is not None:
        revision = A.flux_revision(src.ref_kind, snap.ref or src.ref, snap.sha)
        message = f"stored artifact for revision '{revision}'"
        kept = before.get("revision") == revision and before.get("lastUpdateTime")
        # what we do not make (Flux's digest, path, size, url — left by a source-controller before us) is removed
        gone = {k: None for k in before if k not in ("revision", "lastUpdateTime")}
        status["artifact"] = {**gone, "revision": revision, "lastUpdateTime": kept or now}
        conds = [A.condition("Ready", True, "Succeeded", message, gen, now),
                 A.condition("ArtifactInStorage", True, "Succeeded", message, gen, now)]  # fmt: skip
    else:
        reason = _fetch_reason(error)
        message = str(error) if isinstance(error, SecretError) else f"failed to checkout and determine revision: {error}"
        conds = [A.condition("Ready", False, reason, message, gen, now),
                 A.condition("FetchFailed", True, reason, message, gen, now)]  # fmt: skip
        conds += [c for c in old.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "ArtifactInStorage"]
    status["conditions"] = A.merge_conditions(old.get("conditions") or [], conds)
    return status


def _fetch_reason(error: BaseException | None) -> str:
    """Flux's reason for a failed fetch: AuthenticationFailed (the Secret, or credentials or host key refused) or
    GitOperationFailed (unreachable, timed out, the ref or repository not found, …)."""
    cause = error.__cause__ if error is not None else None
    if isinstance(error, SecretError) or (isinstance(cause, GitError) and cause.kind is GitFailure.AUTH):
        return "AuthenticationFailed"
    return "GitOperationFailed"


def _argo_status(obj: dict[str, Any], spec: A.AppSpec, o: Outcome) -> dict[str, Any]:
    """Where Argo CD's tools read it: sync, health, resources, operationState, history, conditions."""
    old = obj.get("status") or {}
    source = (obj.get("spec") or {}).get("source") or ((obj.get("spec") or {}).get("sources") or [{}])[0]
    dest = (obj.get("spec") or {}).get("destination") or {}
    out_of_sync = any(r["status"] == "OutOfSync" for r in o.resources) or not o.ready
    status: dict[str, Any] = {
        "sync": {"status": "OutOfSync" if out_of_sync else "Synced", "revision": o.revision,
                 "comparedTo": {"source": source, "destination": dest}},
        "health": {"status": str(o.health)},
        "resources": o.resources,
        "reconciledAt": _now(),
        "sourceType": "Directory",
        "conditions": [
            {"type": "UnsupportedFields", "message": "not supported, ignored: " + ", ".join(spec.unsupported),
             "lastTransitionTime": _now()}
        ] if spec.unsupported else [],
    }  # fmt: skip
    if o.notes:
        status["conditions"].append({"type": "UnsupportedObjectAnnotations", "message": "; ".join(o.notes),
                                     "lastTransitionTime": _now()})  # fmt: skip
    if o.problems:
        status["conditions"].append({"type": "SharedResourceWarning", "message": "; ".join(o.problems[:20]),
                                     "lastTransitionTime": _now()})  # fmt: skip
    seen = {(c.get("type"), c.get("message")): c.get("lastTransitionTime") for c in old.get("conditions") or []}
    for c in status["conditions"]:  # a condition that has not changed keeps its time (and causes no write)
        c["lastTransitionTime"] = seen.get((c["type"], c["message"])) or c["lastTransitionTime"]
    if spec.requested_at:
        status["lastHandledReconcileAt"] = spec.requested_at
    prev_op = old.get("operationState") or {}
    quiet = (  # a selfHeal pass that found everything in sync ran no operation: the last one stays (no write)
        not (o.changed or o.requested or o.operation)
        and (prev_op.get("syncResult") or {}).get("revision") == o.revision
        and prev_op.get("phase") == ("Succeeded" if o.ready else "Failed")
    )
    if o.applied and not quiet:
        finished = _now()
        status["operationState"] = {
            "phase": "Succeeded" if o.ready else "Failed",
            "message": f"successfully synced ({o.summary})" if o.ready else f"sync finished with problems ({o.summary})",
            "startedAt": o.started,
            "finishedAt": finished,
            "operation": {"sync": {"revision": o.revision}, "initiatedBy": {"automated": not (o.requested or o.operation)}},
            "syncResult": {"revision": o.revision, "source": source,
                           "resources": [{k: r[k] for k in ("group", "version", "kind", "namespace", "name")} | {
                               "status": "Synced", "message": "applied"} for r in o.resources]},
        }  # fmt: skip
        prev_rev = ((old.get("operationState") or {}).get("syncResult") or {}).get("revision")
        history = list(old.get("history") or [])
        if prev_rev != o.revision or not history:
            history.append({"revision": o.revision, "deployedAt": finished, "deployStartedAt": o.started,
                            "id": (history[-1].get("id", 0) + 1) if history else 0, "source": source})  # fmt: skip
        status["history"] = history[-spec.history_limit :]
    return status


def _argo_failure(obj: dict[str, Any], reason: A.Reason, message: str) -> dict[str, Any]:
    kind = {A.Reason.INVALID: "InvalidSpecError", A.Reason.PROJECT_DENIED: "InvalidSpecError"}.get(reason, "ComparisonError")
    old = obj.get("status") or {}
    return {
        "sync": {**(old.get("sync") or {}), "status": (old.get("sync") or {}).get("status", "Unknown")},
        "health": old.get("health") or {"status": "Unknown"},
        "conditions": [{"type": kind, "message": f"{reason}: {message}", "lastTransitionTime": _now()}],
        "reconciledAt": _now(),
    }


def _records(items: list[Any]) -> tuple[dict[str, Any], ...]:
    """Drift items as the status carries them (at most STATUS_LIST_MAX, Secret values never)."""
    from reconciler.diff import REDACT_KINDS
    from reconciler.engine import STATUS_LIST_MAX

    ordered = sorted(items, key=lambda i: (i.key, i.pointer))[:STATUS_LIST_MAX]
    return tuple(i.record(redact=(i.key.group, i.key.kind) in REDACT_KINDS) for i in ordered)


def _history(old: Any, entry: dict[str, Any], news: bool, limit: int) -> list[dict[str, Any]]:
    """Flux/App sync history, oldest first: an entry per sync that wrote, was asked for, or moved the revision or
    the result — a quiet resync adds none (and so writes nothing)."""
    history = [h for h in old if isinstance(h, dict)] if isinstance(old, list) else []
    last = history[-1] if history else {}
    if news or last.get("revision") != entry["revision"] or last.get("result") != entry["result"]:
        history.append(entry)
    return history[-max(limit, 1) :]


def _namespace(name: str) -> Manifest:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    return Manifest(ResourceKey("", "Namespace", "", name), "v1", body, "CreateNamespace=true")


class _Denied(Exception):
    """The app's project forbids what it asks for."""


class SecretError(ReconcilerError):
    """A Secret the app names is missing or malformed."""


def _project_check(project: A.ProjectSpec) -> Callable[[Manifest], str]:
    def check(m: Manifest) -> str:
        return A.object_violation(project, m.key.group, m.key.kind, m.key.namespace)

    return check


def _subject(key: AppKey) -> str:
    """An app's name in notifications (what subject globs match): NAMESPACE/NAME."""
    return f"{key.namespace}/{key.name}"


def _tracked_by(obj: dict[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(TRACKING_LABEL) or "")


def _generation(obj: dict[str, Any]) -> int:
    g = (obj.get("metadata") or {}).get("generation")
    return g if isinstance(g, int) else 0


def ready_message(obj: dict[str, Any]) -> str:
    """The message of the object's Ready condition as last written ("" without one)."""
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((str(c.get("message") or "") for c in conds if isinstance(c, dict) and c.get("type") == "Ready"), "")


def _requested(obj: dict[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(A.REQUESTED_AT) or "")
