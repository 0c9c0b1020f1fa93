"""A broken or hostile source never deletes, double-applies or leaks: render errors end in exit 4, nothing applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import ResourceKey
from tests.fixtures.cluster import TestCluster
from tests.reconciler.test_reconciler import app_cli, configmap, engine, write_source

pytestmark = pytest.mark.cluster


def _exists(cluster: TestCluster, namespace: str, name: str) -> bool:
    return engine(cluster, namespace, "probe").cluster.get("v1", ResourceKey("", "ConfigMap", namespace, name)) is not None


@pytest.mark.parametrize("in_list", [False, True], ids=["document", "item-of-a-List"])
def test_a_manifest_that_lost_apiversion_and_kind_is_not_pruned(
    cluster: TestCluster, namespace: str, tmp_path: Path, in_list: bool
) -> None:
    src = write_source(tmp_path / "src", configmap("a"), configmap("b", k="v"))
    assert app_cli(cluster, "sync", src, "inc", namespace, "--prune")[0] == 0
    broken = {"metadata": {"name": "b"}, "data": {"k": "v2"}}
    (src / "001-configmap.yaml").write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": [broken]} if in_list else broken)
    )
    code, out, err = app_cli(cluster, "sync", src, "inc", namespace, "--prune", "--force-prune")
    assert code == 4, (out, err)
    assert "001-configmap.yaml:1" in err and "without apiVersion and kind" in err
    assert _exists(cluster, namespace, "b"), "nothing pruned"


def test_the_same_object_spelled_with_and_without_its_namespace_is_a_duplicate(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    spelled = {**configmap("cfg", k="2"), "metadata": {"name": "cfg", "namespace": namespace}}
    src = write_source(tmp_path / "src", configmap("cfg", k="1"), spelled)
    code, out, err = app_cli(cluster, "sync", src, "dup", namespace)
    assert code == 4, (out, err)
    assert f"ConfigMap {namespace}/cfg is declared twice: in 000-configmap.yaml:1 and in 001-configmap.yaml:1" in err
    assert not _exists(cluster, namespace, "cfg"), "nothing applied"

    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"r-{namespace}"},
    }
    stray = {**role, "metadata": {**role["metadata"], "namespace": "stray"}, "rules": []}
    write_source(src, role, stray)
    code, out, err = app_cli(cluster, "sync", src, "dup", namespace)
    assert code == 4 and f"ClusterRole.rbac.authorization.k8s.io r-{namespace} is declared twice" in err, (out, err)


LOL = ",".join(['"lol"'] * 9)
BOMB = "\n".join(
    [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: lol}}\ndata:\n  a0: &a0 [{LOL}]"]
    + [f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)


def test_a_yaml_bomb_in_a_plain_directory_is_a_render_error(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", configmap("fine"))
    (src / "lol.yaml").write_text(BOMB + "\n")
    code, out, err = app_cli(cluster, "sync", src, "bomb", namespace)
    assert code == 4, (out, err[-2000:])
    assert "lol.yaml: refused, over a render limit" in err and "Traceback" not in err
    assert not _exists(cluster, namespace, "fine")


def test_run_never_logs_the_data_of_a_secret_that_lost_its_kind(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "secret.yaml").write_text(
        "apiVersion: v1\nmetadata: {name: creds}\ndata: {password: aHVudGVyMg==}\nstringData: {token: s3cr3t-t0ken}\n"
    )
    code, out, err = app_cli(cluster, "run", src, "leak", namespace, "--once")
    assert code == 4
    assert "secret.yaml:1" in err and "name creds" in err
    for value in ("aHVudGVyMg", "hunter2", "s3cr3t-t0ken"):
        assert value not in out + err
