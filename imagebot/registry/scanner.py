"""Concurrent scans of many repositories: one listing per repository, shared by every policy.

A bounded thread pool runs the listings; each registry client bounds its own concurrency and
rate. With a :class:`ScanState`, every listing records first-seen times and reports the tags
that are new since the last scan. A failed repository is reported, never fatal to the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from imagebot.errors import ImagebotError, RegistryError
from imagebot.refs import ImageRef
from imagebot.registry import Registries
from imagebot.registry.state import ScanState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanResult:
    repository: str  # canonical name, e.g. ghcr.io/org/app
    tags: tuple[str, ...]
    new_tags: tuple[str, ...]
    error: str | None
    seconds: float
    invalid_count: int = 0  # tags outside the OCI grammar the registry sent: ignored, never recorded
    # first-seen time of every tag the state knows for the repository (None without a state)
    first_seen: Mapping[str, float] | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


class Scanner:
    def __init__(
        self, registries: Registries, state: ScanState | None = None, workers: int = 16, clock: Callable[[], float] = time.time
    ) -> None:
        self.registries = registries
        self.state = state
        self.workers = workers
        self.clock = clock

    def scan_one(self, image: ImageRef) -> ScanResult:
        t0 = time.perf_counter()
        repo = image.canonical_name
        try:
            listing = self.registries.client(image.canonical_registry).tag_listing(image.canonical_path)
        except RegistryError as exc:
            if self.state is not None:
                self.state.record_scan(repo, self.clock(), False, 0, str(exc))
            log.warning("scan of %s failed: %s", repo, exc)
            return ScanResult(repo, (), (), str(exc), time.perf_counter() - t0)
        tags = listing.tags
        if listing.invalid_count:
            log.warning("scan of %s: %s", repo, listing.describe_invalid())
        new: list[str] = []
        first_seen: dict[str, float] | None = None
        if self.state is not None:
            new, first_seen = self.state.record_listing(repo, tags, self.clock())
        return ScanResult(repo, tags, tuple(new), None, time.perf_counter() - t0, listing.invalid_count, first_seen)

    def scan(self, images: Iterable[ImageRef]) -> dict[str, ScanResult]:
        """Scan each distinct repository once; results keyed by canonical name."""
        unique: dict[str, ImageRef] = {}
        for img in images:
            unique.setdefault(img.canonical_name, img)
        if not unique:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.workers, len(unique)), thread_name_prefix="scan") as pool:
            results = list(pool.map(self._guarded, unique.values()))
        return {r.repository: r for r in results}

    def _guarded(self, image: ImageRef) -> ScanResult:
        """One repository of a batch: a failure that is not the registry's answer (a caFile gone since validation,
        credentials only the cluster has) is still that repository's, never the batch's."""
        try:
            return self.scan_one(image)
        except Exception as exc:
            why = str(exc) if isinstance(exc, ImagebotError) else f"{type(exc).__name__}: {exc}"
            log.warning("scan of %s failed: %s", image.canonical_name, why)
            return ScanResult(image.canonical_name, (), (), f"registry {image.canonical_registry}: {why}", 0.0)
