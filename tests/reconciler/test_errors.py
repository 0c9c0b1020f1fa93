"""What the API server says is reported as it is: a request too large is no outage; a dry-run of a CRD with its
custom resources says what will exist after the apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import ResourceKey
from tests.fixtures.cluster import TestCluster
from tests.reconciler.test_reconciler import app_cli, configmap, engine, write_source

pytestmark = pytest.mark.cluster


def test_an_object_over_the_api_servers_request_limit_is_reported_as_too_large_not_unreachable(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", configmap("small"), configmap("huge", blob="x" * 16_000_000))
    code, out, err = app_cli(cluster, "sync", src, "big", namespace)
    assert code == 5, (out, err[-1000:])
    assert f"apply ConfigMap {namespace}/huge" in err and "413" in err, err[-1000:]
    assert "unreachable" not in err


def _crd(group: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gizmos.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def test_dry_run_of_a_new_crd_with_its_custom_resource_says_the_kind_will_exist_after_the_apply(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    group = f"dry{namespace.replace('-', '')}.example.com"
    cr = {"apiVersion": f"{group}/v1", "kind": "Gizmo", "metadata": {"name": "g1"}, "spec": {"size": 1}}
    src = write_source(tmp_path / "src", _crd(group), cr, configmap("plain"))
    code, out, err = app_cli(cluster, "sync", src, "dry", namespace, "--dry-run", "--json")
    assert code == 0, (out, err)
    actions = {a["object"]: a for a in json.loads(out)["actions"]}
    gizmo = actions[f"Gizmo.{group} {namespace}/g1"]
    assert gizmo["action"] == "create"
    assert f"its kind will exist once CustomResourceDefinition gizmos.{group} is applied" in gizmo["reason"]
    e = engine(cluster, namespace, "probe")
    assert e.cluster.get("v1", ResourceKey("", "ConfigMap", namespace, "plain")) is None, "a dry-run changes nothing"
    crd_key = ResourceKey("apiextensions.k8s.io", "CustomResourceDefinition", "", f"gizmos.{group}")
    assert e.cluster.get("apiextensions.k8s.io/v1", crd_key) is None
    code, out, err = app_cli(cluster, "sync", src, "dry", namespace)
    assert code == 0, (out, err)


def test_a_server_closing_the_connection_mid_upload_is_reported_as_a_size_refusal(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    """A server whose limit is below ours answers 413 and closes while the body is still being sent."""
    from reconciler.errors import ClusterError

    e = engine(cluster, namespace, "big2")
    e.cluster.max_request_bytes = 64 * 1024 * 1024
    src = write_source(tmp_path / "src", configmap("huge", blob="x" * 16_000_000))
    with pytest.raises(ClusterError) as info:
        e.sync(src)
    assert "413" in str(info.value) and "unreachable" not in str(info.value), str(info.value)[:500]
