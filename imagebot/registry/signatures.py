"""Fetching cosign signatures for one image digest, and the per-digest verdict cache.

The reads (all under one call deadline of the client, each answer under :data:`SIGNATURE_CAP` bytes):

1. ``GET /v2/<name>/manifests/sha256-<hex>.sig`` — the legacy layout; then each simple-signing
   payload blob it names;
2. ``GET /v2/<name>/referrers/<digest>`` (OCI 1.1) — or, when the registry answers 404 (distribution
   2.8 has no referrers API), the fallback index under the tag ``sha256-<hex>``; then each listed
   manifest (at most :data:`~imagebot.verify.cosign.MAX_SIGNATURES`) and its Sigstore bundle blob.

What the registry sends is parsed and judged by the pure :mod:`imagebot.verify.cosign`. Verdicts are
cached in the scanner's state per repository, digest and key set: a verified digest is never fetched
again; a failed one again once :data:`RECHECK_SECONDS` have passed, or at once when the listing's
signature tags for it (``sha256-<hex>.sig``, ``sha256-<hex>``) changed — a signature pushed after its
image is found on the next scan.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from imagebot.refs import ImageRef
from imagebot.registry import Registries
from imagebot.registry.client import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryClient
from imagebot.registry.errors import RegistryProtocolError
from imagebot.registry.state import ScanState
from imagebot.verify import cosign
from imagebot.verify.cosign import Evidence, Malformed, PublicKey, Verification

log = logging.getLogger(__name__)

SIGNATURE_CAP = 1024 * 1024  # one signature manifest, index, payload or bundle
RECHECK_SECONDS = 600.0  # a failed verdict is trusted this long while the signature tags stay the same
_MANIFESTS = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST])
_NO_REFERRERS_API = (400, 404, 405, 406, 501)  # what registries without the endpoint answer (distribution 2.8: 404)


@dataclass(frozen=True, slots=True)
class Found:
    """What the registry holds for one digest: readable signatures, and what could not be read."""

    evidence: tuple[Evidence, ...]
    malformed: tuple[str, ...]
    requests: int  # registry requests it took (for tests and logs)


def signature_tags(digest: str, tags: Sequence[str]) -> tuple[str, ...]:
    """The listing's tags that hold signatures of ``digest`` (its change signal for a cached failure)."""
    base = digest.replace(":", "-")
    return tuple(sorted(t for t in set(tags) if t in (base, base + ".sig")))


def fetch(client: RegistryClient, path: str, digest: str) -> Found:
    """Every cosign signature the registry holds for ``path@digest``; RegistryError when it fails."""
    what = f"signatures of {path}@{digest[:19]}…"
    scope = f"repository:{path}:pull"
    base = f"{client.settings.base_url}/v2/{path}"
    cap = min(SIGNATURE_CAP, client.settings.max_body)
    evidence: list[Evidence] = []
    malformed: list[str] = []
    before = client.requests_made
    with client._call(what) as dl:

        def get(url: str, accept: str, absent: tuple[int, ...] = (404,)) -> bytes | None:
            resp = client._request("GET", url, scope, {"Accept": accept}, dl, what, cap)
            if resp.status_code in absent:
                return None
            if resp.status_code != 200:
                raise client._fail(resp, what)
            return resp.content

        def blob(d: str) -> bytes:
            data = get(f"{base}/blobs/{d}", "*/*")
            if data is None:
                raise Malformed(f"blob {d[:19]}… is missing")
            if "sha256:" + hashlib.sha256(data).hexdigest() != d:
                raise RegistryProtocolError(f"registry {client.settings.host}: {what}: blob {d[:19]}… does not match its digest")
            return data

        tag = digest.replace(":", "-")
        # 1. legacy: sha256-<hex>.sig
        sig = get(f"{base}/manifests/{tag}.sig", _MANIFESTS)
        if sig is not None:
            try:
                for layer in cosign.legacy_layers(sig):
                    evidence.append(cosign.SimpleSigning(blob(layer.digest), layer.signature))
            except Malformed as exc:
                malformed.append(f"legacy .sig: {exc}")
        # 2. Sigstore bundles: the referrers API, else its fallback tag
        index = get(f"{base}/referrers/{digest}", OCI_INDEX, _NO_REFERRERS_API)
        if index is None:
            index = get(f"{base}/manifests/{tag}", OCI_INDEX)
        if index is not None:
            try:
                referrers = cosign.referrer_digests(index)
            except Malformed as exc:
                malformed.append(f"referrers: {exc}")
                referrers = ()
            for ref in referrers:
                try:
                    manifest = get(f"{base}/manifests/{ref}", _MANIFESTS)
                    layer_digest = cosign.bundle_layer(manifest, digest) if manifest is not None else None
                    if layer_digest is not None:
                        evidence.append(cosign.parse_bundle(blob(layer_digest)))
                except Malformed as exc:
                    malformed.append(f"Sigstore bundle {ref[:19]}…: {exc}")
    return Found(tuple(evidence), tuple(malformed), client.requests_made - before)


class Verdicts(Protocol):
    """Where verdicts are cached: the scanner's state (``run``), or :class:`MemoryVerdicts` (the controller)."""

    def signature(self, repository: str, digest: str, keyset: str) -> tuple[Verification, float, str] | None: ...

    def record_signature(
        self, repository: str, digest: str, keyset: str, verdict: Verification, now: float, marks: str
    ) -> None: ...


class Clients(Protocol):
    def client(self, host: str) -> RegistryClient: ...


class MemoryVerdicts:
    """Verdicts in this process's memory (thread-safe), at most ``limit``: the oldest recorded goes first."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._rows: dict[tuple[str, str, str], tuple[Verification, float, str]] = {}
        self._lock = threading.Lock()

    def signature(self, repository: str, digest: str, keyset: str) -> tuple[Verification, float, str] | None:
        with self._lock:
            return self._rows.get((repository, digest, keyset))

    def record_signature(self, repository: str, digest: str, keyset: str, verdict: Verification, now: float, marks: str) -> None:
        with self._lock:
            self._rows.pop((repository, digest, keyset), None)
            self._rows[(repository, digest, keyset)] = (verdict, now, marks)
            while len(self._rows) > self.limit:
                del self._rows[next(iter(self._rows))]


class SignatureChecker:
    """Verdicts for tags of one configuration's keys: digest lookup, cache, fetch, verify. Thread-safe."""

    def __init__(
        self,
        registries: Registries | Clients,
        keys: Sequence[PublicKey],
        state: ScanState | Verdicts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registries = registries
        self.keys = tuple(keys)
        self.keyset = cosign.keyset_id(self.keys)
        self.state = state
        self.clock = clock
        self.fetches = 0  # signature fetches made (cache misses)
        self._lock = threading.Lock()

    def check(self, image: ImageRef, tag: str, listing: Sequence[str] = ()) -> tuple[str, Verification, bool]:
        """(digest of ``image:tag``, its verdict, whether signatures were fetched for it now)."""
        client = self.registries.client(image.canonical_registry)
        digest = client.manifest_digest(image.canonical_path, tag)
        return (digest, *self.check_digest(image, digest, listing))

    def check_digest(self, image: ImageRef, digest: str, listing: Sequence[str] = ()) -> tuple[Verification, bool]:
        repo = image.canonical_name
        marks = ",".join(signature_tags(digest, listing))
        if self.state is not None:
            cached = self.state.signature(repo, digest, self.keyset)
            if cached is not None:
                verdict, checked, seen_marks = cached
                if verdict.ok or (seen_marks == marks and self.clock() - checked < RECHECK_SECONDS):
                    return verdict, False
        client = self.registries.client(image.canonical_registry)
        found = fetch(client, image.canonical_path, digest)
        with self._lock:
            self.fetches += 1
        verdict = cosign.verify(digest, found.evidence, self.keys, found.malformed)
        log.info("%s@%s: %s (%s; %d requests)", repo, digest[:19], verdict.describe(), verdict.detail, found.requests)
        if self.state is not None:
            self.state.record_signature(repo, digest, self.keyset, verdict, self.clock(), marks)
        return verdict, True
