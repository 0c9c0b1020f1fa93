"""`imagebot controller` with the signature gate: an ImagePolicy annotated ``imagebot.dev/cosign-secret`` selects only
tags whose digest carries a cosign signature (the real cosign 3, offline) by a key of that Secret — on the real test
API server and a real registry (htpasswd auth, TLS with our own CA)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from imagebot.controller.controller import COSIGN_SECRET, ImageController
from tests.fixtures.cosign import Cosign, KeyPair
from tests.fixtures.registry import PASSWORD, USER, RegistryServer
from tests.integration.test_image_controller import Cluster, dockerconfig, flux, ready, secret, until

pytestmark = [pytest.mark.cluster]


@pytest.fixture(scope="module")
def signed(registry_basic: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """sig/ctl…: 1.0.0 good key (legacy .sig), 1.1.0 good key (bundle), 1.2.0 other key, 1.3.0 unsigned."""
    work = tmp_path_factory.mktemp("cosign-ctl")
    name = f"sig/ctl{os.urandom(3).hex()}"
    d = registry_basic.pusher().push(name, ["1.0.0", "1.1.0", "1.2.0", "1.3.0"], distinct=True)
    tool = Cosign(work, ca=registry_basic.pki.ca_cert, user=USER, password=PASSWORD)
    good, other = tool.generate_key_pair("good"), tool.generate_key_pair("other")
    ref = f"{registry_basic.host}/{name}@"
    tool.sign(ref + d["1.0.0"], good, legacy=True)
    tool.sign(ref + d["1.1.0"], good)
    tool.sign(ref + d["1.2.0"], other)
    return {"name": name, "digests": d, "good": good, "other": other, "registry": registry_basic, "tool": tool}


@pytest.fixture
def gate(cluster: Any, namespace: str, tmp_path: Path, signed: dict[str, Any]) -> Iterator[tuple[Cluster, ImageController]]:
    """The namespace's registry Secrets and ImageRepository ``app`` (the signed repository), and a controller."""
    from tests.integration.test_crds import install

    api = cluster.api_client()
    install(api)
    kube = Cluster(api, namespace)
    reg: RegistryServer = signed["registry"]
    kube.create(dockerconfig(reg.host, USER, PASSWORD))
    kube.create(secret("registry-ca", {"ca.crt": reg.pki.ca_cert.read_text()}))
    kube.create(flux("ImageRepository", "app", {
        "image": f"{reg.host}/{signed['name']}", "interval": "1h", "secretRef": {"name": "regcred"},
        "certSecretRef": {"name": "registry-ca"}, "exclusionList": ["^.*\\.sig$"],
    }))  # fmt: skip
    ctl = ImageController(api, (namespace,), workers=2, cache=tmp_path / "cache")
    ctl.start()
    try:
        assert ctl.wait_synced(30)
        yield kube, ctl
    finally:
        ctl.stop()


def pem(key: KeyPair) -> str:
    return key.public.read_text()


def annotated_policy(name: str, secret_name: str, semver: str = "^1") -> dict[str, Any]:
    pol = flux("ImagePolicy", name, {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": semver}}})
    pol["metadata"]["annotations"] = {COSIGN_SECRET: secret_name}
    return pol


def settled(kube: Cluster, name: str, status: str, reason: str = "Succeeded") -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        o = kube.get("ImagePolicy", name)
        return o if (ready(o).get("status"), ready(o).get("reason")) == (status, reason) else None

    return until(done, what=f"ImagePolicy {name} Ready={status} ({reason})")


def sample(ctl: ImageController, metric: str, **labels: str) -> float:
    return ctl.metrics.registry.get_sample_value(metric, labels) or 0.0


def test_the_annotated_policy_picks_the_newest_signed_tag_and_a_rescan_refetches_no_signature(
    gate: tuple[Cluster, ImageController], signed: dict[str, Any]
) -> None:
    kube, ctl = gate
    kube.create(secret("cosign-pub", {"cosign.pub": pem(signed["good"]), "README": "not a key: ignored"}))
    kube.create(annotated_policy("signed", "cosign-pub"))
    kube.create(flux("ImagePolicy", "plain", {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1"}}}))
    pol = settled(kube, "signed", "True")
    # 1.3.0 is unsigned, 1.2.0 signed by another key: the newest tag signed by cosign-pub's key is 1.1.0
    assert pol["status"]["latestRef"]["tag"] == "1.1.0", pol["status"]
    assert settled(kube, "plain", "True")["status"]["latestRef"]["tag"] == "1.3.0", "without the annotation: no gate"
    ns = kube.ns
    assert sample(ctl, "imagebot_signature_rejections_total", namespace=ns, name="signed", reason="no signature") >= 1
    assert sample(ctl, "imagebot_signature_rejections_total", namespace=ns, name="signed", reason="key mismatch") >= 1
    fetched = sample(ctl, "imagebot_signature_checks_total", source="registry")
    assert fetched == 3, "1.3.0, 1.2.0 and 1.1.0: each digest fetched once, however often the policy was reconciled"

    # `flux reconcile image policy`: the verdicts are cached per digest, nothing is fetched again
    kube.annotate("ImagePolicy", "signed", "reconcile.fluxcd.io/requestedAt", "again")
    until(lambda: kube.get("ImagePolicy", "signed")["status"].get("lastHandledReconcileAt") == "again", what="reconciled")
    assert sample(ctl, "imagebot_signature_checks_total", source="cache") >= 3
    assert sample(ctl, "imagebot_signature_checks_total", source="registry") == fetched

    # every *.pub entry is a trusted key: with the other key too, 1.2.0 is selected (an annotation change is news)
    kube.create(secret("both", {"good.pub": pem(signed["good"]), "other.pub": pem(signed["other"])}))
    kube.annotate("ImagePolicy", "signed", COSIGN_SECRET, "both")
    until(lambda: kube.get("ImagePolicy", "signed")["status"]["latestRef"]["tag"] == "1.2.0", what="1.2.0 with both keys")


def test_a_secret_with_another_key_selects_nothing_and_says_why(
    gate: tuple[Cluster, ImageController], signed: dict[str, Any]
) -> None:
    kube, _ = gate
    stranger = ed25519.Ed25519PrivateKey.generate().public_key()
    text = stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    kube.create(secret("stranger", {"cosign.pub": text}))
    kube.create(annotated_policy("signed", "stranger"))
    pol = settled(kube, "signed", "False", "ReconciliationFailed")
    message = ready(pol)["message"]
    assert f"Secret {kube.ns}/stranger" in message, message
    assert "1.3.0: signature not verified (no signature)" in message, message
    assert "1.1.0: signature not verified (key mismatch)" in message, message
    assert "latestRef" not in pol["status"]


def test_a_missing_or_keyless_secret_is_ready_false_naming_it_and_latest_ref_stays(
    gate: tuple[Cluster, ImageController], signed: dict[str, Any]
) -> None:
    kube, _ = gate
    kube.create(secret("cosign-pub", {"cosign.pub": pem(signed["good"])}))
    kube.create(secret("no-keys", {"cosign.key": "private halves are not looked at"}))
    kube.create(secret("garbled", {"cosign.pub": "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n"}))
    kube.create(annotated_policy("signed", "cosign-pub"))
    assert settled(kube, "signed", "True")["status"]["latestRef"]["tag"] == "1.1.0"
    for name, needle in (
        ("absent", f"Secret {kube.ns}/absent ({COSIGN_SECRET}) not found"),
        ("no-keys", f"Secret {kube.ns}/no-keys: no *.pub entry"),
        ("garbled", f"Secret {kube.ns}/garbled entry cosign.pub"),
    ):
        kube.annotate("ImagePolicy", "signed", COSIGN_SECRET, name)
        pol = until(lambda n=needle: (o := kube.get("ImagePolicy", "signed")) and n in ready(o).get("message", "") and o,
                    what=f"Ready=False naming {name}")  # fmt: skip
        assert ready(pol)["status"] == "False" and ready(pol)["reason"] == "AuthenticationFailed", ready(pol)
        assert pol["status"]["latestRef"]["tag"] == "1.1.0", "latestRef unchanged"
    # the Secret fixed (created): the next retry reads it
    kube.create(secret("absent", {"cosign.pub": pem(signed["good"])}))
    kube.annotate("ImagePolicy", "signed", COSIGN_SECRET, "absent")
    assert settled(kube, "signed", "True")["status"]["latestRef"]["tag"] == "1.1.0"


def test_a_signature_pushed_after_its_image_is_found_at_the_next_scan(
    gate: tuple[Cluster, ImageController], signed: dict[str, Any]
) -> None:
    kube, _ = gate
    reg: RegistryServer = signed["registry"]
    name = f"sig/late{os.urandom(3).hex()}"
    d = reg.pusher().push(name, ["2.0.0", "2.1.0"], distinct=True)
    tool: Cosign = signed["tool"]
    tool.sign(f"{reg.host}/{name}@{d['2.0.0']}", signed["good"], legacy=True)
    kube.create(flux("ImageRepository", "late", {
        "image": f"{reg.host}/{name}", "interval": "1h", "secretRef": {"name": "regcred"},
        "certSecretRef": {"name": "registry-ca"}, "exclusionList": ["^.*\\.sig$"],
    }))  # fmt: skip
    kube.create(secret("cosign-pub", {"cosign.pub": pem(signed["good"])}))
    pol = flux("ImagePolicy", "late", {"imageRepositoryRef": {"name": "late"}, "policy": {"semver": {"range": "^2"}}})
    pol["metadata"]["annotations"] = {COSIGN_SECRET: "cosign-pub"}
    kube.create(pol)
    assert settled(kube, "late", "True")["status"]["latestRef"]["tag"] == "2.0.0"
    # 2.1.0 signed now: its sha256-<hex>.sig tag is excluded from the scan's tags, yet it is news for the policy
    tool.sign(f"{reg.host}/{name}@{d['2.1.0']}", signed["good"], legacy=True)
    kube.annotate("ImageRepository", "late", "reconcile.fluxcd.io/requestedAt", "signed")
    until(lambda: kube.get("ImagePolicy", "late")["status"]["latestRef"]["tag"] == "2.1.0", what="2.1.0 once signed")
