"""Operators' hold / release / approve on a Flux ImagePolicy: the ``imagebot.dev/`` annotations the controller reads
(:mod:`imagebot.config.fluxextras`), written by ``imagebot hold|release|approve --policy NS/NAME`` and the dashboard.

:func:`plan` is pure: from the policy as read (and, for approve, the policy it promotes from) it says what to write,
that nothing needs writing (a second hold is "already held"), or why the action is refused. :func:`apply` does no
I/O of its own: the caller's ``get`` and ``patch`` do; it sends a JSON merge patch that names only our annotations
and carries the object's ``resourceVersion``, so a concurrent writer's change is never lost — a conflict (409) is
read again and planned again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from imagebot.config import fluxextras as fx
from imagebot.errors import ClusterError, UsageError
from imagebot.refs import valid_tag

IMAGE_PATH = "/apis/image.toolkit.fluxcd.io/v1"
ATTEMPTS = 5  # conflicts in a row before giving up (the controller writes its records on the same object)
REASON_LIMIT = 200  # the hold's reason is shown in Ready's message and on every dashboard row
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # DNS-1123 label: a namespace
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # DNS-1123 subdomain


class Action(StrEnum):
    HOLD = "hold"
    RELEASE = "release"
    APPROVE = "approve"


class NotFound(UsageError):
    """The ImagePolicy acted on does not exist."""


class Refused(UsageError):
    """The action makes no sense on this policy (approve without promote-from, nothing to approve, a bad tag)."""


class Conflict(Exception):
    """Raised by a caller's ``patch`` on HTTP 409: the object changed since it was read."""


class Contended(ClusterError):
    """The object changed under every one of ATTEMPTS writes."""


@dataclass(frozen=True, slots=True)
class PolicyRef:
    namespace: str
    name: str

    @property
    def path(self) -> str:
        return f"{IMAGE_PATH}/namespaces/{self.namespace}/imagepolicies/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_ref(text: str) -> PolicyRef:
    """``NAMESPACE/NAME`` (or a setter marker's ``NAMESPACE:NAME``), both Kubernetes names: checked before any
    request, so nothing else ever reaches a URL path."""
    ns, sep, name = text.strip().replace(":", "/", 1).partition("/")
    if not sep:
        raise UsageError(f"--policy {text!r}: give NAMESPACE/NAME (the ImagePolicy's namespace and name)")
    if len(ns) > 63 or not _LABEL.fullmatch(ns):
        raise UsageError(f"--policy {text!r}: {ns!r} is not a namespace name")
    if len(name) > 253 or not _NAME.fullmatch(name):
        raise UsageError(f"--policy {text!r}: {name!r} is not an ImagePolicy name")
    return PolicyRef(ns, name)


@dataclass(frozen=True, slots=True)
class Plan:
    annotations: dict[str, str | None] | None  # the merge patch's annotations (None removes one); None: no write
    message: str  # what was done, or why nothing needed doing


def _annotations(obj: Mapping[str, Any]) -> dict[str, Any]:
    found = (obj.get("metadata") or {}).get("annotations") or {}
    return dict(found) if isinstance(found, Mapping) else {}


def latest_tag(obj: Mapping[str, Any] | None) -> str | None:
    latest = ((obj or {}).get("status") or {}).get("latestRef") or {}
    tag = latest.get("tag") if isinstance(latest, Mapping) else None
    return str(tag) if tag else None


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) > REASON_LIMIT or any(ord(ch) < 32 for ch in reason):
        raise Refused(f"reason: at most {REASON_LIMIT} characters on one line, no control characters")
    return reason


def check_tag(tag: str) -> str:
    if not valid_tag(tag):
        raise Refused(f"{tag!r} is not an image tag")
    return tag


def plan(
    action: Action,
    ref: PolicyRef,
    obj: Mapping[str, Any],
    *,
    reason: str | None = None,
    tag: str | None = None,
    source: Mapping[str, Any] | None = None,
) -> Plan:
    """What ``action`` writes on the ImagePolicy ``obj`` (``source``: the policy its promote-from names, read; None
    when missing). ``reason``/``tag`` None: keep the current hold's (hold), the source's latestRef (approve).
    Raises Refused; never plans a write the controller would refuse as InvalidPolicy."""
    ann = _annotations(obj)
    patch: dict[str, str | None]
    if action is Action.HOLD:
        held, pinned = ann.get(fx.HOLD), ann.get(fx.HOLD_TAG)
        new_reason = check_reason(reason) if reason is not None else str(held or "")
        new_tag = check_tag(tag) if tag is not None else pinned
        said = f"{new_reason or 'no reason given'}" + (f"; pinned at {new_tag}" if new_tag else "")
        if held is not None and (held, pinned) == (new_reason, new_tag):
            return Plan(None, f"{ref}: already held ({said})")
        patch = {fx.HOLD: new_reason}
        if new_tag != pinned:
            patch[fx.HOLD_TAG] = new_tag
        moves = new_tag is not None and latest_tag(obj) != new_tag
        done = f"{ref}: on hold ({said}); its latestRef " + (f"moves to {new_tag} and stays" if moves else "stays")
    elif action is Action.RELEASE:
        if fx.HOLD not in ann and fx.HOLD_TAG not in ann:
            return Plan(None, f"{ref}: was not on hold")
        patch, done = {fx.HOLD: None, fx.HOLD_TAG: None}, f"{ref}: released; the controller selects its tag again"
    else:
        source_name = ann.get(fx.PROMOTE_FROM)
        if not isinstance(source_name, str) or not source_name.strip():
            raise Refused(f"{ref} does not promote from another ImagePolicy (no {fx.PROMOTE_FROM} annotation): "
                          "nothing to approve")  # fmt: skip
        source_name = source_name.strip()
        if tag is None:
            if source is None:
                raise Refused(f"{ref} promotes from {ref.namespace}/{source_name}, which does not exist: nothing to approve")
            tag = latest_tag(source)
            if tag is None:
                raise Refused(f"{ref.namespace}/{source_name} has no latestRef yet: nothing to approve")
        check_tag(tag)
        if latest_tag(obj) == tag:
            return Plan(None, f"{ref}: already at {tag}")
        if ann.get(fx.APPROVE) == tag:
            return Plan(None, f"{ref}: {tag} already approved")
        patch, done = {fx.APPROVE: tag}, f"{ref}: {tag} approved; the controller promotes it from {source_name} now"
        if fx.HOLD in ann:
            done += " — once the policy's hold is released"
    _check_result(ann, patch, ref)
    return Plan(patch, done)


def _check_result(ann: Mapping[str, Any], patch: Mapping[str, str | None], ref: PolicyRef) -> None:
    """Refuse a write that would leave the policy invalid (the controller's reading, its message); an error the
    policy already had is not ours to fix, and does not stop an operator's hold."""
    after = {k: v for k, v in {**ann, **patch}.items() if v is not None}
    try:
        fx.parse(after, ref.name)
    except fx.ExtrasError as exc:
        try:
            fx.parse(ann, ref.name)
        except fx.ExtrasError as before:
            if str(before) == str(exc):
                return
        raise Refused(f"{ref}: not written, the controller would refuse it: {exc}") from None


Getter = Callable[[str], "dict[str, Any] | None"]  # GET a path: the object, None on 404
Patcher = Callable[[str, "dict[str, Any]"], None]  # merge-PATCH a path; raises Conflict on 409


def apply(
    action: Action,
    ref: PolicyRef,
    get: Getter,
    patch: Patcher,
    *,
    reason: str | None = None,
    tag: str | None = None,
) -> tuple[bool, str]:
    """Read, plan and write with the object's resourceVersion as precondition; on a conflict read again. Returns
    (written, message). Raises NotFound, Refused, Contended, or what ``get``/``patch`` raise."""
    for _ in range(ATTEMPTS):
        obj = get(ref.path)
        if obj is None:
            raise NotFound(f"no ImagePolicy {ref.name} in namespace {ref.namespace}")
        source = None
        promote = _annotations(obj).get(fx.PROMOTE_FROM)
        if action is Action.APPROVE and tag is None and isinstance(promote, str) and _NAME.fullmatch(promote.strip()):
            source = get(PolicyRef(ref.namespace, promote.strip()).path)
        p = plan(action, ref, obj, reason=reason, tag=tag, source=source)
        if p.annotations is None:
            return False, p.message
        version = (obj.get("metadata") or {}).get("resourceVersion")
        try:
            patch(ref.path, {"metadata": {"resourceVersion": version, "annotations": p.annotations}})
        except Conflict:
            continue
        return True, p.message
    raise Contended(f"{ref} changed under each of {ATTEMPTS} writes: try again")
