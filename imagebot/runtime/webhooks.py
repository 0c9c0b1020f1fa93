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

__all__ = ["authorized", "repositories", "sign", "verify"]


def repositories(body: bytes) -> list[str]:
    """Canonical repository names named by a webhook payload ([] when none)."""
    try:
        doc: Any = json.loads(body)
    except ValueError:
        return []
    names: list[str] = []
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):  # distribution notifications
        for ev in doc["events"]:
            target, req = ev.get("target") or {}, ev.get("request") or {}
            if ev.get("action") == "push" and target.get("repository"):
                host = req.get("host")
                names.append(f"{host}/{target['repository']}" if host else target["repository"])
    elif isinstance(doc, dict) and isinstance(doc.get("push_data"), dict):  # Docker Hub
        names.append(f"docker.io/{(doc.get('repository') or {}).get('repo_name', '')}")
    elif isinstance(doc, dict) and isinstance(doc.get("package"), dict):  # GitHub Packages (GHCR)
        pkg = doc["package"]
        owner = (pkg.get("owner") or {}).get("login") or pkg.get("namespace") or ""
        names.append(f"ghcr.io/{owner.lower()}/{pkg.get('name', '')}")
    elif isinstance(doc, dict) and isinstance(doc.get("event_data"), dict):  # Harbor
        for res in doc["event_data"].get("resources") or []:
            names.append(str(res.get("resource_url", "")))
    elif isinstance(doc, dict) and isinstance(doc.get("image"), str):  # generic CI
        names.append(doc["image"])
    out = []
    for n in names:
        try:
            ref = refs.parse(n)
        except Exception:
            continue
        out.append(ref.canonical_name)
    return sorted(set(out))
