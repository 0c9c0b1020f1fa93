"""Signature verification (pure): cosign's two layouts, ECDSA P-256 and Ed25519 keys, the gate over a policy."""

from __future__ import annotations

from imagebot.verify.cosign import PublicKey, Status, Verification, VerifyError, keyset_id, load_keys, secret_keys
from imagebot.verify.gate import DEFAULT_LIMIT, Gated, explain, first_verified

__all__ = [
    "DEFAULT_LIMIT",
    "Gated",
    "PublicKey",
    "Status",
    "Verification",
    "VerifyError",
    "explain",
    "first_verified",
    "keyset_id",
    "load_keys",
    "secret_keys",
]
