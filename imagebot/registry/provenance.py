"""An image's OCI annotations and platforms, read for the tags actually proposed (never for every tag).

Reads, under one call deadline of the client and :data:`PROVENANCE_CAP` bytes each: the manifest (or
index) by digest or tag; for an index, its platforms and the first platform manifest; then the config
blob, whose ``config.Labels`` fill what the manifests' ``annotations`` leave out. Answers are cached in
the scanner's state per repository and digest (an image's content never changes under its digest).
Parsing is pure (:func:`parse`); a read that fails is reported, never raised to the caller.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from imagebot.errors import RegistryError
from imagebot.registry.client import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryClient, valid_digest
from imagebot.registry.errors import RegistryProtocolError
from imagebot.registry.state import ScanState
from imagebot.update.model import Provenance

log = logging.getLogger(__name__)

PROVENANCE_CAP = 1024 * 1024  # one manifest, index or config blob
MAX_FIELD = 512  # an annotation value kept (longer ones are cut)
MAX_PLATFORMS = 32
_KEYS = ("source", "revision", "created", "version")
_PREFIX = "org.opencontainers.image."
_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _platform(p: object) -> str:
    if not isinstance(p, dict):
        return ""
    parts = [p.get("os"), p.get("architecture"), p.get("variant")]
    text = "/".join(str(x) for x in parts if isinstance(x, str) and x)
    return "" if text in ("", "unknown/unknown") else text[:64]  # unknown/unknown: an attestation, not a platform


def platforms(index: dict[str, Any]) -> tuple[str, ...]:
    """The platforms an image index lists, in its order, without attestation entries."""
    manifests = index.get("manifests")
    found = [_platform(d.get("platform")) for d in manifests if isinstance(d, dict)] if isinstance(manifests, list) else []
    return tuple(dict.fromkeys(p for p in found if p))[:MAX_PLATFORMS]


def parse(*layers: dict[str, Any] | None, plats: tuple[str, ...] = ()) -> Provenance:
    """The annotations from ``layers`` (an index, a manifest: their ``annotations``; a config blob: its
    ``config.Labels``), the first layer that has a key winning."""
    found: dict[str, str] = {}
    for doc in layers:
        if not isinstance(doc, dict):
            continue
        values = _strings(doc.get("annotations"))
        cfg = doc.get("config")
        if isinstance(cfg, dict) and "Labels" in cfg:
            values = _strings(cfg.get("Labels"))
        for key in _KEYS:
            v = values.get(_PREFIX + key, "").strip()
            if v and key not in found:
                found[key] = v[:MAX_FIELD]
    return Provenance(platforms=plats, **found)


def fetch(
    client: RegistryClient, path: str, reference: str, known: Callable[[str], Provenance | None] | None = None
) -> tuple[str, Provenance]:
    """The image's digest and provenance; RegistryError when a read fails. ``known`` answers for a digest already
    read: asked once the manifest (by tag: its digest is the hash of what came back) is in, it saves the rest."""
    what = f"annotations of {path}@{reference[:19]}"
    scope = f"repository:{path}:pull"
    base = f"{client.settings.base_url}/v2/{path}"
    cap = min(PROVENANCE_CAP, client.settings.max_body)
    with client._call(what) as dl:

        def get(url: str, accept: str, want: str | None) -> tuple[str, dict[str, Any]]:
            resp = client._request("GET", url, scope, {"Accept": accept}, dl, what, cap)
            if resp.status_code != 200:
                raise client._fail(resp, what)
            digest = "sha256:" + hashlib.sha256(resp.content).hexdigest()
            if want is not None and valid_digest(want) and digest != want:
                raise RegistryProtocolError(f"registry {client.settings.host}: {what}: content does not match its digest")
            try:
                doc = resp.json()
            except ValueError:
                raise RegistryProtocolError(f"registry {client.settings.host}: {what}: not JSON") from None
            if not isinstance(doc, dict):
                raise RegistryProtocolError(f"registry {client.settings.host}: {what}: not a JSON object")
            return digest, doc

        want = reference if valid_digest(reference) else None
        digest, top = get(f"{base}/manifests/{reference}", _ACCEPT, want)
        cached = known(digest) if known is not None else None
        if cached is not None:
            return digest, cached
        layers: list[dict[str, Any] | None] = [top]
        plats: tuple[str, ...] = ()
        if isinstance(top.get("manifests"), list):  # an index: the first platform's manifest has the rest
            plats = platforms(top)
            first = next((d for d in top["manifests"] if isinstance(d, dict) and _platform(d.get("platform"))), None)
            child = first.get("digest") if first is not None else None
            if isinstance(child, str) and valid_digest(child):
                layers.append(get(f"{base}/manifests/{child}", ", ".join([OCI_MANIFEST, DOCKER_MANIFEST]), child)[1])
        manifest = layers[-1] or {}
        cfg = manifest.get("config")
        cfg_digest = cfg.get("digest") if isinstance(cfg, dict) else None
        if isinstance(cfg_digest, str) and valid_digest(cfg_digest):
            layers.append(get(f"{base}/blobs/{cfg_digest}", "*/*", cfg_digest)[1])
    return digest, parse(*layers, plats=plats)


class ProvenanceReader:
    """Provenance per repository and digest, cached in the scan state; failures come back as ``unavailable``."""

    def __init__(self, state: ScanState) -> None:
        self.state = state

    def read(self, client: RegistryClient, repository: str, path: str, reference: str) -> Provenance:
        try:
            # a tag is read by its manifest (whose hash is its digest), not by a HEAD first: one request fewer when
            # the digest is new; a tag proposed pass after pass (its PR not merged yet) then stops at the cache
            by_digest = valid_digest(reference)
            if by_digest:
                cached = self.state.provenance(repository, reference)
                if cached is not None:
                    return cached
            hits: list[Provenance] = []

            def known(digest: str) -> Provenance | None:
                hit = self.state.provenance(repository, digest)
                hits.extend([hit] if hit is not None else [])
                return hit

            # by digest the cache was asked above: asking it again once the manifest is in would repeat that read
            digest, found = fetch(client, path, reference, None if by_digest else known)
            if hits:
                return found
        except (RegistryError, OSError, sqlite3.Error) as exc:  # e.g. a locked state file: the update goes on
            log.info("annotations of %s@%s unavailable: %s", repository, reference[:19], exc)
            return Provenance(unavailable=str(exc)[:300])
        try:
            self.state.record_provenance(repository, digest, found)
        except sqlite3.Error as exc:  # not cached this time: read again next time
            log.info("annotations of %s@%s not cached: %s", repository, digest[:19], exc)
        return found
