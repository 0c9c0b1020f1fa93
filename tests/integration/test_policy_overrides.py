"""`imagebot hold|release|approve --policy NS/NAME` on the real test API server, a real registry and the running
controller: the command writes the annotations the controller reads, and the controller honours them — a held
policy does not move when a newer tag is pushed, its release lets it move, an approval cuts a soak short. Bad input
is a message and a documented exit code, with nothing written."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from imagebot.cli import main
from imagebot.controller import overrides as O
from imagebot.controller.controller import ImageController
from tests.fixtures.cluster import TestCluster
from tests.fixtures.net import free_port
from tests.fixtures.registry import RegistryServer
from tests.integration import test_image_controller as base
from tests.integration.test_image_controller import Cluster, flux, ready, until

pytestmark = [pytest.mark.cluster]
kube, controller = base.kube, base.controller  # the image controller tests' fixtures: a namespace, a controller on it


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


def policy(kube: Cluster, name: str) -> dict[str, Any]:
    return kube.get("ImagePolicy", name)


def tag_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("status") or {}).get("latestRef") or {}).get("tag")


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def version(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


def create_policy(kube: Cluster, name: str, annotations: dict[str, str]) -> None:
    obj = flux("ImagePolicy", name, {"imageRepositoryRef": {"name": "shop"}, "policy": {"semver": {"range": "^1"}}})
    obj["metadata"]["annotations"] = annotations
    kube.create(obj)


def rescan(kube: Cluster, tags: int) -> None:
    """``flux reconcile image repository``: scan now, until the repository lists ``tags`` tags."""
    kube.annotate("ImageRepository", "shop", "reconcile.fluxcd.io/requestedAt", f"{time.time_ns()}")
    until(lambda: ((kube.get("ImageRepository", "shop").get("status") or {}).get("lastScanResult") or {}).get("tagCount")
          == tags, what=f"the repository scanned with {tags} tags")  # fmt: skip


def test_hold_stops_the_policy_release_lets_it_move_and_a_second_call_writes_nothing(
    kube: Cluster, controller: ImageController, registry_plain: RegistryServer, cluster: TestCluster
) -> None:
    ns, reg = kube.ns, registry_plain
    k = ("--kubeconfig", str(cluster.kubeconfig))
    reg.pusher().push(f"{ns}/shop", ["1.4.0"], distinct=True)
    kube.create(flux("ImageRepository", "shop", {"image": f"{reg.host}/{ns}/shop", "interval": "1h", "insecure": True}))
    create_policy(kube, "web", {})
    until(lambda: tag_of(policy(kube, "web")) == "1.4.0", what="web at 1.4.0")

    code, out, err = cli("hold", "--policy", f"{ns}/web", "--reason", "incident 42", *k)
    assert (code, err) == (0, ""), err
    assert out == f"{ns}/web: on hold (incident 42); its latestRef stays\n"
    assert annotations(policy(kube, "web"))["imagebot.dev/hold"] == "incident 42"
    until(lambda: "held (imagebot.dev/hold): incident 42" in ready(policy(kube, "web")).get("message", ""), what="Held")
    before = version(policy(kube, "web"))
    code, out, _ = cli("hold", "--policy", f"{ns}:web", *k)  # the setter marker's spelling; the reason is kept
    assert (code, out) == (0, f"{ns}/web: already held (incident 42)\n")
    assert version(policy(kube, "web")) == before, "a second hold writes nothing"

    # a newer tag, scanned: the held policy stays
    reg.pusher().push(f"{ns}/shop", ["1.5.0"], distinct=True)
    rescan(kube, 2)
    time.sleep(1.0)  # not a timing assertion: give a wrong move the chance to show
    held = policy(kube, "web")
    assert tag_of(held) == "1.4.0" and ready(held)["reason"] == "Held", ready(held)

    code, out, _ = cli("release", "--policy", f"{ns}/web", *k)
    assert (code, out) == (0, f"{ns}/web: released; the controller selects its tag again\n")
    until(lambda: tag_of(policy(kube, "web")) == "1.5.0", what="web released to 1.5.0")
    assert "imagebot.dev/hold" not in annotations(policy(kube, "web"))
    before = version(policy(kube, "web"))
    assert cli("release", "--policy", f"{ns}/web", *k)[:2] == (0, f"{ns}/web: was not on hold\n")
    assert version(policy(kube, "web")) == before

    # a rollback that sticks: hold pinned at a tag
    code, out, _ = cli("hold", "--policy", f"{ns}/web", "--tag", "1.4.0", *k)
    assert (code, out) == (0, f"{ns}/web: on hold (no reason given; pinned at 1.4.0); its latestRef moves to 1.4.0 and stays\n")
    until(lambda: tag_of(policy(kube, "web")) == "1.4.0", what="web pinned back at 1.4.0")
    assert annotations(policy(kube, "web"))["imagebot.dev/hold-tag"] == "1.4.0"
    assert cli("release", "--policy", f"{ns}/web", *k)[0] == 0
    until(lambda: tag_of(policy(kube, "web")) == "1.5.0", what="web back at 1.5.0")
    assert not {"imagebot.dev/hold", "imagebot.dev/hold-tag"} & set(annotations(policy(kube, "web")))


def test_approve_cuts_the_soak_short_and_is_refused_on_a_policy_that_promotes_from_nothing(
    kube: Cluster, controller: ImageController, registry_plain: RegistryServer, cluster: TestCluster
) -> None:
    ns, reg = kube.ns, registry_plain
    k = ("--kubeconfig", str(cluster.kubeconfig))
    reg.pusher().push(f"{ns}/shop", ["1.4.0"], distinct=True)
    kube.create(flux("ImageRepository", "shop", {"image": f"{reg.host}/{ns}/shop", "interval": "1h", "insecure": True}))
    create_policy(kube, "staging", {})
    create_policy(kube, "prod", {"imagebot.dev/promote-from": "staging", "imagebot.dev/soak": "24h"})
    until(lambda: "1.4.0 soaking in staging" in ready(policy(kube, "prod")).get("message", ""), what="prod soaking")

    before = version(policy(kube, "staging"))
    code, out, err = cli("approve", "--policy", f"{ns}/staging", *k)
    assert code == 2 and out == ""
    assert err == (f"imagebot: error: {ns}/staging does not promote from another ImagePolicy (no imagebot.dev/promote-from "
                   "annotation): nothing to approve\n")  # fmt: skip
    assert version(policy(kube, "staging")) == before and "imagebot.dev/approve" not in annotations(policy(kube, "staging"))

    code, out, _ = cli("approve", "--policy", f"{ns}/prod", *k)
    assert (code, out) == (0, f"{ns}/prod: 1.4.0 approved; the controller promotes it from staging now\n")
    assert annotations(policy(kube, "prod"))["imagebot.dev/approve"] == "1.4.0"
    until(lambda: tag_of(policy(kube, "prod")) == "1.4.0", what="prod promoted at once")
    assert cli("approve", "--policy", f"{ns}/prod", *k)[:2] == (0, f"{ns}/prod: already at 1.4.0\n")


def test_bad_input_is_a_message_and_an_exit_code_with_nothing_written(
    kube: Cluster, cluster: TestCluster, tmp_path: Path
) -> None:
    ns = kube.ns
    k = ("--kubeconfig", str(cluster.kubeconfig))
    web = f"web-{ns}"  # no other test's namespace has one by this name (the test server keeps their objects)
    create_policy(kube, web, {})
    before = version(policy(kube, web))
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("hold", "--policy", f"{ns}/nope", *k), 2, f"no ImagePolicy nope in namespace {ns}"),
        (("hold", "--policy", f"default/{web}", *k), 2,
         f"no ImagePolicy {web} in namespace default; there is one in namespace {ns}"),
        (("hold", "--policy", "web", *k), 2, "--policy 'web': give NAMESPACE/NAME"),
        (("hold", "--policy", "../x/web", *k), 2, "is not a namespace name"),
        (("hold", "--policy", f"{ns}/{web}", "--tag", "not a tag", *k), 2, "'not a tag' is not an image tag"),
        (("hold", "--policy", f"{ns}/{web}", "--reason", "a\nb", *k), 2, "reason: at most 200 characters on one line"),
        (("hold", "--policy", f"{ns}/{web}", "--by", "alice", *k), 2, "--by is file mode's record"),
        (("hold", "--policy", f"{ns}/{web}", "app", "dev", *k), 2, "it goes without IMAGE ENV and --config"),
        (("hold", "app", *k), 2, "give IMAGE ENV --config FILE... (file mode) or --policy NAMESPACE/NAME"),
        (("release", "--policy", f"{ns}/{web}", "--kubeconfig", str(tmp_path / "missing")), 2, "no usable kubeconfig"),
    ]
    for argv, want, text in cases:
        code, out, err = cli(*argv)
        assert (code, out) == (want, ""), (argv, code, out, err)
        assert err.startswith("imagebot: error: ") and text in err and err.count("\n") == 1, (argv, err)
    assert version(policy(kube, web)) == before, "nothing was written"

    # an API server that is not there: exit 7, within the deadline
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(cluster.kubeconfig.read_text().replace(_server(cluster), f"https://127.0.0.1:{free_port()}"))
    code, out, err = cli("hold", "--policy", f"{ns}/{web}", "--kubeconfig", str(dead), "--timeout", "10")
    assert (code, out) == (7, "") and err.startswith("imagebot: error: the API server is unreachable"), err


def _server(cluster: TestCluster) -> str:
    import yaml

    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    return str(doc["clusters"][0]["cluster"]["server"])


def test_a_concurrent_writer_is_not_lost_the_write_is_read_and_planned_again(kube: Cluster) -> None:
    """The resourceVersion precondition: another writer's annotation between our read and our write makes the
    server refuse ours (409); the next attempt reads theirs and keeps it."""
    ns = kube.ns
    create_policy(kube, "web", {})
    ref = O.PolicyRef(ns, "web")
    reads = []

    def get(path: str) -> dict[str, Any] | None:
        obj = request_json(kube.api, "GET", path)
        reads.append(version(obj))
        if len(reads) == 1:  # someone else writes right after our first read
            kube.annotate("ImagePolicy", "web", "team.example/owner", "payments")
        return dict(obj)

    def patch(path: str, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            request_json(kube.api, "PATCH", path, body=body, content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 409:
                raise O.Conflict from None
            raise

    done = O.apply(O.Action.HOLD, ref, get, patch, reason="incident 7")
    assert done == (True, f"{ns}/web: on hold (incident 7); its latestRef stays")
    assert len(reads) == 2 and reads[0] != reads[1]
    got = annotations(policy(kube, "web"))
    assert got["imagebot.dev/hold"] == "incident 7" and got["team.example/owner"] == "payments"


def test_an_object_that_changes_under_every_write_is_exit_7_not_a_loop(kube: Cluster) -> None:
    ref = O.PolicyRef(kube.ns, "web")
    create_policy(kube, "web", {})
    calls = []

    def get(path: str) -> dict[str, Any] | None:
        return dict(request_json(kube.api, "GET", path))

    def patch(path: str, body: dict[str, Any]) -> None:
        calls.append(body)
        raise O.Conflict

    with pytest.raises(O.Contended, match="changed under each of 5 writes"):
        O.apply(O.Action.HOLD, ref, get, patch)
    assert len(calls) == O.ATTEMPTS and O.Contended("x").exit_code == 7
