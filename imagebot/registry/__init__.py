"""OCI registries: the client, credentials, limits, and the concurrent scanner with its state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from imagebot.registry.client import Platform, RegistryClient, RegistrySettings

__all__ = ["Platform", "Registries", "RegistryClient", "RegistrySettings"]


class Registries:
    """One client per registry host, built from per-host settings or a default template."""

    def __init__(
        self,
        default: RegistrySettings | None = None,
        per_host: dict[str, RegistrySettings] | None = None,
        factory: Callable[[RegistrySettings], RegistryClient] = RegistryClient,
    ) -> None:
        self.default = default or RegistrySettings(host="")
        self.per_host = dict(per_host or {})
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()
        self._factory = factory

    def settings_for(self, host: str) -> RegistrySettings:
        return self.per_host.get(host) or replace(self.default, host=host)

    def client(self, host: str) -> RegistryClient:
        with self._lock:
            c = self._clients.get(host)
            if c is None:
                c = self._clients[host] = self._factory(self.settings_for(host))
            return c
