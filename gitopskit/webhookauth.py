"""Webhook authentication shared by both receivers: an HMAC-SHA256 signature with the shared secret in
``X-Imagebot-Signature-256`` or ``X-Hub-Signature-256`` (``sha256=<hex>``), or — for senders that cannot
sign — the secret itself as ``Authorization: Bearer <secret>`` (or bare), ``X-Gitlab-Token`` or
``?token=<secret>``. A signature, when present, must be right: it is never overridden by a token."""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol
from urllib.parse import parse_qs


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    return bool(secret) and bool(header) and hmac.compare_digest(sign(secret, body), header or "")


class Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


def authorized(secret: str, body: bytes, headers: Headers, query: str = "") -> bool:
    """Is this request from someone holding the secret (signature, or the secret as a token)?"""
    if not secret:
        return False  # no secret configured: nothing is accepted
    signature = headers.get("X-Imagebot-Signature-256") or headers.get("X-Hub-Signature-256")
    if signature:
        return verify(secret, body, signature)
    tokens = parse_qs(query).get("token", [])
    auth = (headers.get("Authorization") or "").strip()
    if auth:
        tokens.append(auth[7:].strip() if auth[:7].lower() == "bearer " else auth)
    gitlab = headers.get("X-Gitlab-Token")
    if gitlab:
        tokens.append(gitlab)
    return any(hmac.compare_digest(t.encode(), secret.encode()) for t in tokens)
