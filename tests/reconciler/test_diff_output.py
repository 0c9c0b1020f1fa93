"""`reconciler diff` text is one valid unified diff that `git apply --check` / `patch` accept, shows fields added out
of band, and a bare repository directory is a source like its file:// URL."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gitopskit.kube import request_json
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import make_bare
from tests.reconciler.test_reconciler import app_cli, configmap, write_source

pytestmark = pytest.mark.cluster


def test_diff_of_several_objects_is_one_valid_unified_diff_and_shows_added_fields(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    src = write_source(tmp_path / "src", configmap("a", k="1"), configmap("b", k="1"))
    assert app_cli(cluster, "sync", src, "d", ns)[0] == 0
    api = cluster.api_client()
    request_json(api, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/a")  # its diff is all '+', ending in '+}'
    request_json(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/b?fieldManager=kubectl-edit",
                 body={"data": {"k": "2"}}, content_type="application/merge-patch+json")  # fmt: skip
    request_json(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/b?fieldManager=kubectl-annotate",
                 body={"metadata": {"annotations": {"team": "x"}}}, content_type="application/merge-patch+json")  # fmt: skip
    code, out, _ = app_cli(cluster, "diff", src, "d", ns)
    assert code == 1
    text = out[: out.index("\n# ") + 1]  # the diff, then one '# object: drift' line per item
    assert re.search(r"^\+\}\n--- live/", text, re.M), "each object's hunk ends its line before the next header"
    assert text.count("--- live/") == 2 and text.count("+++ git/") == 2
    assert '-      "team": "x"' in text, "an annotation added out of band is in the diff, not only in the summary"
    # patch(1) parses every hunk: a hunk glued to the next header would be "malformed"
    proc = subprocess.run(["patch", "--dry-run", "-p0", "-d", str(tmp_path)], input=text, capture_output=True, text=True)
    assert "malformed" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr


def test_a_bare_repository_directory_is_a_source(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    bare = make_bare(tmp_path, "cfg", {"cm.yaml": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}'})
    code, out, err = app_cli(cluster, "sync", bare, "bare", namespace)
    assert code == 0, err
    assert re.search(r"synced bare at [0-9a-f]{12}", out)
