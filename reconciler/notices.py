"""What in an app's life is news to a person, as notification events: a sync that failed (once per distinct
failure, not once per retry), health that became Degraded or Missing and its recovery to Healthy, and
drift seen or corrected (the engine's watch reports those through ``drift`` and ``corrected``).
Transitions are kept per app in memory: a restart may repeat the latest one, never lose one."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from gitopskit.notify import (
    Emitter,
    Event,
    EventType,
    FailureTracker,
    NotifyConfig,
    NotifyConfigError,
    NullEmitter,
    ObjectRef,
    load_file,
)
from reconciler.errors import UsageError
from reconciler.model import DriftItem, Health, ResourceKey

_BAD = (Health.DEGRADED, Health.MISSING)
_USERINFO = re.compile(r"//[^/@\s]*@")  # credentials in a URL never reach a message


def object_ref(obj: dict[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(
        str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(meta.get("name", "")), str(meta.get("namespace") or ""),
        str(meta.get("uid") or ""),
    )  # fmt: skip


class AppNotices:
    def __init__(
        self, emitter: Emitter | None = None, failing_after: float = 600.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.emitter: Emitter = emitter or NullEmitter()
        self.peers = FailureTracker(failing_after)  # git remotes failing for long
        self.clock = clock
        self._lock = threading.Lock()
        self._health: dict[str, Health] = {}
        self._failure: dict[str, str] = {}

    def synced(self, app: str, health: Health, revision: str, obj: ObjectRef | None = None) -> None:
        """A sync (or compare) finished: the failure streak ends; health moved into or out of trouble."""
        with self._lock:
            self._failure.pop(app, None)
            before = self._health.get(app)
            self._health[app] = health
        facts = (("revision", revision), ("health", str(health)))
        if health in _BAD and before not in _BAD:
            message = f"{app} is {health} at {revision}"
            self.emitter.emit(Event(EventType.HEALTH_DEGRADED, app, message, details=facts, object=obj))
        elif health is Health.HEALTHY and before in _BAD:
            message = f"{app} is Healthy again at {revision}"
            self.emitter.emit(Event(EventType.HEALTH_RECOVERED, app, message, details=facts, object=obj))

    def failed(self, app: str, message: str, obj: ObjectRef | None = None) -> None:
        with self._lock:
            if self._failure.get(app) == message:
                return  # the same failure retried: told once
            self._failure[app] = message
        self.emitter.emit(Event(EventType.SYNC_FAILED, app, message, object=obj))

    def drift(self, app: str, key: ResourceKey, api_version: str, uid: str, items: list[DriftItem], redact: bool) -> None:
        what = "; ".join(i.describe(redact=redact) for i in items[:5])
        what += f"; and {len(items) - 5} more" if len(items) > 5 else ""
        obj = ObjectRef(api_version, key.kind, key.name, key.namespace, uid)
        fields = ", ".join(i.pointer or "(object)" for i in items)
        self.emitter.emit(Event(EventType.DRIFT_DETECTED, app, f"{key}: {what}", details=(("fields", fields),), object=obj))

    def corrected(self, app: str, key: ResourceKey, api_version: str, items: list[DriftItem], ms: float) -> None:
        fields = ", ".join(i.pointer or "(object)" for i in items)
        obj = ObjectRef(api_version, key.kind, key.name, key.namespace)
        message = f"{key}: {fields} restored from Git in {ms:.0f} ms"
        self.emitter.emit(Event(EventType.DRIFT_CORRECTED, app, message, details=(("fields", fields),), object=obj))

    def peer(self, peer: str, error: str | None) -> None:
        """A git remote answered (``error`` None) or failed: news once it has failed for longer than failingAfter."""
        peer = _USERINFO.sub("//", peer)
        with self._lock:
            now = self.clock()
            event = self.peers.succeeded(peer, now) if error is None else self.peers.failed(peer, now, error)
        if event is not None:
            self.emitter.emit(event)

    def forget(self, app: str) -> None:
        with self._lock:
            self._health.pop(app, None)
            self._failure.pop(app, None)


def load_notify_config(path: str) -> NotifyConfig:
    """``--notify-config FILE`` (the same ``notifications:`` section as imagebot's config); exit 2 when invalid."""
    try:
        return load_file(path)
    except NotifyConfigError as exc:
        raise UsageError(str(exc)) from None
