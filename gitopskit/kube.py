"""One raw JSON request through the official client's ApiClient (URL, TLS and auth from its
configuration). Typed models cost more than the network on a local API server, and some of
them serialise times in a form the server rejects (MicroTime), so both halves use this."""

from __future__ import annotations

import json
from typing import Any

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
    """Send; return the decoded JSON (None when empty). Raises ApiException (status >= 400) or urllib3 errors."""
    _, url, headers, _, _ = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Accept": "application/json", "Content-Type": content_type},
        auth_settings=["BearerToken"],
    )
    payload = None if body is None else json.dumps(body).encode()
    resp = api.rest_client.pool_manager.request(
        method, url, body=payload, headers=headers, timeout=urllib3.Timeout(total=timeout), preload_content=True
    )
    if resp.status >= 400:
        raise ApiException(status=resp.status, reason=resp.reason, body=resp.data.decode(errors="replace"))
    return json.loads(resp.data) if resp.data else None


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
