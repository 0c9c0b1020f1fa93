"""Registry and CI webhooks: signature check and payload → repositories to scan now (pure).

Accepted payloads: Docker distribution notifications (``events[].target.repository`` with the
request host), Docker Hub (``repository.repo_name``), GitHub Packages / GHCR (``package``),
Harbor (``event_data.resources[].resource_url``), and a generic ``{"image": "...", "tag": "..."}``
from CI. The body must carry an HMAC-SHA256 signature with the shared secret in
``X-Imagebot-Signature-256`` or ``X-Hub-Signature-256`` (``sha256=<hex>``); missing or wrong → 401.

Senders that cannot sign present the shared secret itself instead: Docker distribution
(``notifications.endpoints[].headers``) and Harbor ("Auth Header") as ``Authorization: Bearer
<secret>`` (or the bare secret), GitLab as ``X-Gitlab-Token``, and Docker Hub — which lets you set
only the URL — as ``?token=<secret>``. A signature, when present, must be right: it is never
overridden by a token.
"""

from __future__ import annotations

import json
from typing import Any

from gitopskit.webhookauth import authorized, sign, verify
from imagebot import refs
from imagebot.errors import UsageError

__all__ = ["BadPayload", "authorized", "repositories", "sign", "verify"]


class BadPayload(UsageError):
    """A webhook body that is not JSON, or one of the known payloads with fields of the wrong type (→ 400)."""


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadPayload(f"{where} must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadPayload(f"{where} must be a list")
    return value


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadPayload(f"{where} must be a string")
    return value


def repositories(body: bytes) -> list[str]:
    """Canonical repository names named by a webhook payload ([] when it names none, e.g. a ping).
    Raises BadPayload for a body that is not a JSON object, or a known payload of the wrong shape."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise BadPayload("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadPayload("the body must be a JSON object")
    names: list[str] = []
    if "events" in doc:  # distribution notifications
        for ev in _list(doc["events"], "events"):
            ev = _obj(ev, "events[]")
            target, req = _obj(ev.get("target"), "events[].target"), _obj(ev.get("request"), "events[].request")
            repo = _str(target.get("repository"), "events[].target.repository")
            if ev.get("action") == "push" and repo:
                host = _str(req.get("host"), "events[].request.host")
                names.append(f"{host}/{repo}" if host else repo)
    elif "push_data" in doc:  # Docker Hub
        _obj(doc["push_data"], "push_data")
        names.append(f"docker.io/{_str(_obj(doc.get('repository'), 'repository').get('repo_name'), 'repository.repo_name')}")
    elif "package" in doc:  # GitHub Packages (GHCR)
        pkg = _obj(doc["package"], "package")
        owner = _str(_obj(pkg.get("owner"), "package.owner").get("login"), "package.owner.login")
        owner = owner or _str(pkg.get("namespace"), "package.namespace")
        names.append(f"ghcr.io/{owner.lower()}/{_str(pkg.get('name'), 'package.name')}")
    elif "event_data" in doc:  # Harbor
        for res in _list(_obj(doc["event_data"], "event_data").get("resources"), "event_data.resources"):
            names.append(_str(_obj(res, "event_data.resources[]").get("resource_url"), "resource_url"))
    elif "image" in doc:  # generic CI
        names.append(_str(doc["image"], "image"))
    out = []
    for n in names:
        try:
            ref = refs.parse(n)
        except Exception:
            continue  # a name that is no image reference names nothing we could scan
        out.append(ref.canonical_name)
    return sorted(set(out))
