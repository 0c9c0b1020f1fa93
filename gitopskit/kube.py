"""One raw JSON request through the official client's ApiClient (URL, TLS and auth from its
configuration). Typed models cost more than the network on a local API server, and some of
them serialise times in a form the server rejects (MicroTime), so both halves use this."""

from __future__ import annotations

import json
import time
import weakref
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from gitopskit.errors import KubeConfigError


def request_json(
    api: client.ApiClient,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: float = 30.0,
) -> Any:
    """Send ``body`` (JSON-encoded here, or bytes already encoded); return the decoded JSON (None when empty).
    Raises ApiException (status >= 400) or urllib3 errors."""
    base, auth = _base(api)
    url = base + path
    if query:  # as the client's parameters_to_url_query writes it
        url += "?" + "&".join(f"{k}={quote(str(v).lower() if isinstance(v, bool) else str(v))}" for k, v in query)
    headers = {**auth, "Accept": "application/json", "Content-Type": content_type}
    payload = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = api.rest_client.pool_manager.request(
        method, url, body=payload, headers=headers, timeout=urllib3.Timeout(total=timeout), preload_content=True
    )
    if resp.status >= 400:
        raise ApiException(status=resp.status, reason=resp.reason, body=resp.data.decode(errors="replace"))
    return json.loads(resp.data) if resp.data else None


# how long a client's URL base and auth headers are reused: building them runs the client's refresh hook, which
# rewrites its whole configuration (and scans the environment for proxies) on every request — a third of a local
# request's client CPU. That hook renews a token 5 minutes before it expires, so a second's reuse never sends a
# stale one.
AUTH_TTL = 1.0
_bases: weakref.WeakKeyDictionary[client.ApiClient, tuple[float, str, dict[str, str]]] = weakref.WeakKeyDictionary()


def _base(api: client.ApiClient) -> tuple[str, dict[str, str]]:
    now = time.monotonic()
    hit = _bases.get(api)
    if hit is not None and now - hit[0] < AUTH_TTL:
        return hit[1], hit[2]
    _, base, headers, _, _ = api.param_serialize(method="GET", resource_path="", header_params={}, auth_settings=["BearerToken"])
    _bases[api] = (now, base, headers)
    return base, headers


def load_api_client(kubeconfig: str | None = None, context: str | None = None, pool: int = 16) -> client.ApiClient:
    """Standard resolution: --kubeconfig, then $KUBECONFIG / ~/.kube/config, then in-cluster."""
    cfg = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
        else:
            try:
                config.load_kube_config(context=context, client_configuration=cfg)
            except config.ConfigException:
                config.load_incluster_config(client_configuration=cfg)
    except (config.ConfigException, OSError) as exc:
        raise KubeConfigError(f"no usable kubeconfig ({exc}); give --kubeconfig or set KUBECONFIG") from None
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)
