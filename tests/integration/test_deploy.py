"""deploy/: every manifest is accepted by a server-side dry-run apply, and RBAC grants nothing
beyond what each component uses; leader election on a real Lease."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from imagebot.runtime.leader import RBAC_USES, LeaseElector
from reconciler import rbac
from tests.fixtures.cluster import TestCluster

pytestmark = pytest.mark.cluster
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def docs(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d]


def test_every_manifest_passes_server_side_dry_run(cluster: TestCluster) -> None:
    for overlay in (DEPLOY / "base", DEPLOY / "overlays" / "example"):
        built = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True).stdout
        proc = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager",
                "deploy-test",
                "-f",
                "-",
            ],
            input=built,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("(server dry run)") == len([d for d in YAML(typ="safe").load_all(built) if d])


def _rules(kind_name: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for f in sorted((DEPLOY / "base").glob("*.yaml")):
        for d in docs(f):
            if d["kind"] == "Role" and d["metadata"]["name"].startswith(kind_name):
                out.extend((d["metadata"]["namespace"], r) for r in d["rules"])
    return out


def test_imagebot_rbac_is_its_lease_only() -> None:
    granted = {(g, res, v) for _, r in _rules("imagebot") for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    assert granted == RBAC_USES
    for _, r in _rules("imagebot"):
        if set(r["verbs"]) & {"get", "update"}:
            assert r.get("resourceNames") == ["imagebot-leader"], "get/update only its own Lease"
    roles = [d for f in (DEPLOY / "base").glob("*.yaml") for d in docs(f)]
    assert not [d for d in roles if d["kind"] in ("ClusterRole", "ClusterRoleBinding")], "no cluster-wide grants by default"


def test_reconciler_rbac_matches_what_it_does() -> None:
    manage = [(ns, r) for ns, r in _rules("reconciler-manage")]
    own = [(ns, r) for ns, r in _rules("reconciler-inventory")]
    assert {ns for ns, _ in manage} == {"apps"} and {ns for ns, _ in own} == {"gitops-system"}
    for _, r in manage:
        assert set(r["verbs"]) <= rbac.MANAGE_VERBS and "*" not in r["resources"] and "*" not in r["apiGroups"]
    granted_own = {(g, res, v) for _, r in own for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    assert granted_own == rbac.OWN_NAMESPACE


def test_lease_election_one_leader_and_takeover_after_expiry(cluster: TestCluster, namespace: str) -> None:
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    a = LeaseElector(cluster.api_client(), namespace, "a", duration=15, clock=lambda: now[0])
    b = LeaseElector(cluster.api_client(), namespace, "b", duration=15, clock=lambda: now[0])
    assert a.try_acquire() and not b.try_acquire()
    now[0] += dt.timedelta(seconds=10)
    assert a.try_acquire() and not b.try_acquire(), "renewal keeps the lease"
    now[0] += dt.timedelta(seconds=16)
    assert b.try_acquire() and not a.try_acquire(), "an expired lease is taken over"
    lease = json.loads(
        subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "-n",
                namespace,
                "get",
                "lease",
                "imagebot-leader",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert lease["spec"]["holderIdentity"] == "b"
