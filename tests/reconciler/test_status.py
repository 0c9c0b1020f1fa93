"""`reconciler status` says when each fact was observed and whether anything still observes the app."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gitopskit.kube import request_json
from reconciler.engine import OBSERVED_AT
from reconciler.inventory import configmap_name
from tests.fixtures.cluster import TestCluster
from tests.reconciler.test_reconciler import app_cli, cli, configmap, write_source

pytestmark = pytest.mark.cluster


def test_status_times_each_fact_keeps_the_last_prune_and_says_when_nothing_observes(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    src = write_source(tmp_path / "src", configmap("a", k="1"), configmap("b", k="1"))
    assert app_cli(cluster, "sync", src, "st", ns)[0] == 0
    write_source(src, configmap("a", k="1"))
    assert app_cli(cluster, "sync", src, "st", ns, "--prune")[0] == 0
    assert app_cli(cluster, "sync", src, "st", ns, "--prune")[0] == 0  # unchanged: nothing to prune this time
    code, out, _ = cli(cluster, "status", "--name", "st", "--inventory-namespace", ns)
    assert code == 0
    assert "last prune (since 20" in out and "prune ConfigMap" in out, "an unchanged sync keeps the last prune"
    assert "revision local (since 20" in out
    assert "STALE: no loop has ever observed this app" in out

    # one turn of the loop: observed now
    assert app_cli(cluster, "run", src, "st", ns, "--once")[0] == 0
    code, out, _ = cli(cluster, "status", "--name", "st", "--inventory-namespace", ns)
    assert re.search(r"observed \d+s ago by reconciler run on \S+ \(pid \d+\)", out), out

    # the loop stops; someone edits an object: status says the record is stale and what changed since
    api = cluster.api_client()
    head = f"/api/v1/namespaces/{ns}/configmaps/{configmap_name('st')}"
    old = {"metadata": {"annotations": {OBSERVED_AT: "2026-01-01T00:00:00Z"}}}
    request_json(api, "PATCH", head, body=old, content_type="application/merge-patch+json")
    request_json(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/a?fieldManager=kubectl-edit",
                 body={"data": {"k": "2"}}, content_type="application/merge-patch+json")  # fmt: skip
    code, out, _ = cli(cluster, "status", "--name", "st", "--inventory-namespace", ns)
    assert "STALE: last observed 2026-01-01T00:00:00Z" in out and "nothing is observing it now" in out
    assert f"changed since then: ConfigMap {ns}/a written by kubectl-edit at 20" in out
    code, out, _ = cli(cluster, "status", "--name", "st", "--inventory-namespace", ns, "--json")
    doc = json.loads(out)
    assert doc["observed"]["live"] is False and doc["changedSince"] and doc["lastPruneAt"] and doc["revisionAt"]
