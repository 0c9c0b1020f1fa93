"""Registry errors: one-line causes naming the registry; bodies truncated, secrets redacted."""

from __future__ import annotations

import re

from imagebot.errors import RegistryError

_SECRETS = re.compile(r"(?i)(authorization|token|password|access_token|refresh_token)([\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+")
_URL_USERINFO = re.compile(r"(https?://)[^/@\s]+@")


def redact(text: str, limit: int = 300) -> str:
    """Drop credentials (tokens, passwords, URL user-info), escape what a terminal would act on, cut long bodies."""
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _SECRETS.sub(r"\1\2***", text)
    text = " ".join(text.split())
    # a registry's words reach terminals and logs: no control, format (bidi) or separator character goes through
    # as itself, it is shown escaped (ESC as \x1b)
    cut = len(text) > limit
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit])
    return text if not cut and len(text) <= limit else text[: limit - 1] + "…"


class RegistryUnreachable(RegistryError):
    pass


class RegistryAuthError(RegistryError):
    pass


class RegistryNotFound(RegistryError):
    pass


class RegistryRateLimited(RegistryError):
    pass


class RegistryProtocolError(RegistryError):
    """The registry answered something that is not the distribution API (bad JSON, bad links, loops)."""
