"""The cosign signature gate on real parts: images signed by the real cosign 3 (Debian sid's, offline) in
both layouts in Debian's docker-registry (distribution 2.8: no referrers API, so cosign 3 writes the
fallback tag), read back by `imagebot select --cosign-key` and by `run` with `verify:` in the config."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from imagebot.cli import main
from imagebot.config.load import load
from imagebot.runtime.runner import Runner
from tests.fixtures.botconfig import deployment, git_env, imagebot_config
from tests.fixtures.cosign import Cosign, KeyPair, ed25519_key, sign_by_hand
from tests.fixtures.counting import CountingProxy
from tests.fixtures.git import GitHttp, make_bare, read_file
from tests.fixtures.oci import OCI_INDEX, OCI_MANIFEST, Pusher, sha
from tests.fixtures.registry import PASSWORD, USER, RegistryServer

pytestmark = pytest.mark.git


def copy_signature(pusher: Pusher, name: str, source: str, target: str, *, legacy: bool) -> None:
    """What an attacker can do with push rights: put image ``source``'s valid signature on image ``target``."""
    src, dst = source.replace(":", "-"), target.replace(":", "-")
    if legacy:
        r = pusher._req("GET", f"/v2/{name}/manifests/{src}.sig", name, headers={"Accept": OCI_MANIFEST})
        pusher.manifest(name, dst + ".sig", r.content, OCI_MANIFEST)
        return
    index = pusher._req("GET", f"/v2/{name}/manifests/{src}", name, headers={"Accept": OCI_INDEX}).json()
    ref = pusher._req("GET", f"/v2/{name}/manifests/{index['manifests'][0]['digest']}", name, headers={"Accept": OCI_MANIFEST})
    referrer = ref.json()
    referrer["subject"]["digest"] = target  # a referrer of the target carrying the source's bundle
    body = json.dumps(referrer).encode()
    d = pusher.manifest(name, sha(body), body, OCI_MANIFEST)
    index["manifests"] = [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(body)}]
    pusher.manifest(name, dst, json.dumps(index).encode(), OCI_INDEX)


@pytest.fixture(scope="module")
def signed(registry_basic: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """sig/app: 1.0.0 good key (legacy .sig), 1.1.0 good key (bundle), 1.2.0 other key, 1.3.0 1.0.0's .sig
    copied, 1.4.0 1.1.0's bundle copied, 1.5.0 unsigned, 1.6.0 / 1.7.0 an Ed25519 key imported into cosign
    (legacy / bundle; cosign signs Ed25519ph), 1.8.0 / 1.9.0 pure Ed25519 (legacy / bundle, by hand)."""
    work = tmp_path_factory.mktemp("cosign")
    pusher = registry_basic.pusher()
    name = f"sig/app{os.urandom(3).hex()}"
    d = pusher.push(name, [f"1.{n}.0" for n in range(10)], distinct=True)
    tool = Cosign(work, ca=registry_basic.pki.ca_cert, user=USER, password=PASSWORD)
    good, other = tool.generate_key_pair("good"), tool.generate_key_pair("other")
    ref = f"{registry_basic.host}/{name}@"
    tool.sign(ref + d["1.0.0"], good, legacy=True)
    tool.sign(ref + d["1.1.0"], good)
    tool.sign(ref + d["1.2.0"], other)
    copy_signature(pusher, name, d["1.0.0"], d["1.3.0"], legacy=True)
    copy_signature(pusher, name, d["1.1.0"], d["1.4.0"], legacy=False)
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ed = tool.import_key_pair(pem, "ed25519")
    tool.sign(ref + d["1.6.0"], ed, legacy=True)
    tool.sign(ref + d["1.7.0"], ed)
    pure, pure_pub = ed25519_key(work, "pure")
    sign_by_hand(pusher, name, d["1.8.0"], pure, legacy=True)
    sign_by_hand(pusher, name, d["1.9.0"], pure, legacy=False)
    return {"name": name, "digests": d, "good": good, "other": other, "ed": ed, "pure": pure_pub, "registry": registry_basic}


def select(signed: dict[str, object], rng: str, *keys: Path, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    registry: RegistryServer = signed["registry"]  # type: ignore[assignment]
    out, err = io.StringIO(), io.StringIO()
    os.environ["SIG_TEST_CREDS"] = f"{USER}:{PASSWORD}"
    argv = ["select", "--image", f"{registry.host}/{signed['name']}", "--semver", rng, "--ca-file", str(registry.pki.ca_cert)]
    argv += ["--credentials-env", "SIG_TEST_CREDS", *extra]
    for k in keys:
        argv += ["--cosign-key", str(k)]
    code = main(argv, out=out, err=err)
    return code, out.getvalue().strip(), err.getvalue()


def pub(signed: dict[str, object], which: str) -> Path:
    key = signed[which]
    return key.public if isinstance(key, KeyPair) else key  # type: ignore[return-value]


def test_the_newest_signed_tag_is_chosen_over_newer_unsigned_forged_and_foreign_ones(signed: dict[str, object]) -> None:
    code, tag, err = select(signed, "^1", pub(signed, "good"), extra=("--explain",))
    assert (code, tag) == (0, "1.1.0"), err
    assert "1.5.0: signature not verified (no signature)" in err
    assert "1.4.0: signature not verified (digest mismatch)" in err  # a bundle copied from 1.1.0
    assert "1.3.0: signature not verified (digest mismatch)" in err  # a .sig copied from 1.0.0
    assert "1.2.0: signature not verified (key mismatch)" in err  # signed, by another key
    assert "1.7.0: signature not verified (key mismatch)" in err


def test_the_legacy_sig_layout_verifies(signed: dict[str, object]) -> None:
    assert select(signed, "<1.1.0", pub(signed, "good"))[:2] == (0, "1.0.0")


def test_a_signature_from_another_key_is_accepted_only_with_that_key(signed: dict[str, object]) -> None:
    assert select(signed, "<1.3.0", pub(signed, "other"))[:2] == (0, "1.2.0")
    assert select(signed, "<1.6.0", pub(signed, "good"), pub(signed, "other"))[:2] == (0, "1.2.0")


def test_ed25519_signatures_made_by_cosign_verify_in_both_layouts(signed: dict[str, object]) -> None:
    assert select(signed, "<1.8.0", pub(signed, "ed"))[:2] == (0, "1.7.0")
    assert select(signed, "<1.7.0", pub(signed, "ed"))[:2] == (0, "1.6.0")


def test_pure_ed25519_signatures_verify_in_both_layouts(signed: dict[str, object]) -> None:
    assert select(signed, "^1", pub(signed, "pure"))[:2] == (0, "1.9.0")
    assert select(signed, "<1.9.0", pub(signed, "pure"))[:2] == (0, "1.8.0")


def test_no_signed_tag_is_exit_1_with_the_reasons(signed: dict[str, object], tmp_path: Path) -> None:
    code, tag, err = select(signed, ">=1.3.0 <1.6.0", pub(signed, "good"))
    assert (code, tag) == (1, "")
    assert "no tag with a verified signature qualifies" in err and "1.5.0: signature not verified (no signature)" in err


def test_an_unusable_key_is_a_usage_error(signed: dict[str, object], tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key\n")
    code, _, err = select(signed, "^1", bad)
    assert code == 2 and "no PEM 'PUBLIC KEY' block" in err and "Traceback" not in err
    code, _, err = select(signed, "^1", tmp_path / "missing.pub")
    assert code == 2 and "missing.pub" in err


# ---- run: the gate in the loop, the verdict cache


IMAGES = """images:
  - name: app
    repository: {image}
    verify: {{cosign: {{key: {key}}}}}
    environments:
      prod:
        policy: {{semver: "^1"}}
        digest: true
        target: {{git: config, path: prod}}
"""


def config(images: str, tmp_path: Path, registry: str, url: str) -> str:
    return imagebot_config(images, state=tmp_path / "state.db", cache=tmp_path / "cache", registries=[registry], url=url,
                           env="SIG", branch=None)  # fmt: skip


def git_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in git_env("SIG").items():
        monkeypatch.setenv(k, v)


def _signature_reads(seen: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(m, p) for m, p in seen if "/referrers/" in p or "/blobs/" in p or "/manifests/sha256-" in p]


def test_run_selects_the_newest_signed_tag_and_a_rescan_fetches_no_signature_again(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pusher = registry_plain.pusher()
    name = f"sig/run{os.urandom(3).hex()}"
    d = pusher.push(name, ["1.0.0", "1.1.0", "1.2.0", "1.3.0"], distinct=True)
    tool = Cosign(tmp_path / "cosign")
    key = tool.generate_key_pair("release")
    tool.sign(f"{registry_plain.host}/{name}@{d['1.0.0']}", key, legacy=True)
    tool.sign(f"{registry_plain.host}/{name}@{d['1.1.0']}", key)
    copy_signature(pusher, name, d["1.1.0"], d["1.3.0"], legacy=False)  # 1.2.0 unsigned, 1.3.0 forged
    proxy = CountingProxy(registry_plain.url)
    try:
        image = f"{proxy.host}/{name}"
        bare = make_bare(git_http.root, f"sig{os.urandom(4).hex()}", {"prod/deploy.yaml": deployment(f"{image}:1.0.0")})
        git_credentials(monkeypatch)
        cfg = tmp_path / "imagebot.yaml"
        cfg.write_text(config(IMAGES.format(image=image, key=key.public), tmp_path, proxy.host, git_http.url(bare)))
        runner = Runner(load([cfg]))
        repo = runner.cfg.images[0].repository.canonical_name

        report = runner.run_pass(only=[repo])
        assert not report.errors, report.errors
        assert f"{image}:1.1.0@{d['1.1.0']}" in read_file(bare, "main", "prod/deploy.yaml")
        (reason,) = [r for _, _, r in report.decisions]
        assert "1.3.0: signature not verified (digest mismatch)" in reason
        assert "1.2.0: signature not verified (no signature)" in reason
        rejected = runner.metrics.registry.get_sample_value
        assert rejected("imagebot_signature_rejections_total", {"image": "app", "reason": "no signature"}) == 1
        assert rejected("imagebot_signature_rejections_total", {"image": "app", "reason": "digest mismatch"}) == 1
        assert _signature_reads(proxy.seen), "the first pass read signatures"

        out = io.StringIO()
        assert main(["status", "--config", str(cfg)], out=out, err=io.StringIO()) == 0
        assert "1.2.0: signature not verified (no signature)" in out.getvalue()

        # a rescan (a new process on the same state too): the digests are unchanged, no signature is read again
        for again in (runner, Runner(load([cfg]))):
            mark = len(proxy.seen)
            report = again.run_pass(only=[repo])
            assert not report.errors, report.errors
            assert _signature_reads(proxy.since(mark)) == [], proxy.since(mark)
            assert "1.2.0: signature not verified (no signature)" in report.decisions[0][2]

        # 1.2.0 signed later: its signature tag appears in the listing, so its cached failure is checked again
        tool.sign(f"{registry_plain.host}/{name}@{d['1.2.0']}", key)
        mark = len(proxy.seen)
        report = runner.run_pass(only=[repo])
        assert not report.errors, report.errors
        assert f"{image}:1.2.0@{d['1.2.0']}" in read_file(bare, "main", "prod/deploy.yaml")
        reads = {p for _, p in _signature_reads(proxy.since(mark))}
        assert any(d["1.2.0"].replace(":", "-") in p for p in reads)
        assert not any(d["1.1.0"].replace(":", "-") in p for p in reads), "a verified digest is never read again"
    finally:
        proxy.stop()


PROMOTE = """images:
  - name: app
    repository: {image}
    environments:
      staging:
        policy: {{semver: "^1"}}
        digest: true
        target: {{git: config, path: staging}}
      prod:
        promote: {{from: staging}}
        verify: {{cosign: {{key: {key}}}}}
        digest: true
        target: {{git: config, path: prod}}
"""


def test_a_gated_environment_never_takes_an_unsigned_tag_by_promotion(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pusher = registry_plain.pusher()
    name = f"sig/promote{os.urandom(3).hex()}"
    d = pusher.push(name, ["1.0.0", "1.1.0"], distinct=True)
    tool = Cosign(tmp_path / "cosign")
    key = tool.generate_key_pair("release")
    image = f"{registry_plain.host}/{name}"
    files = {f"{env}/deploy.yaml": deployment(f"{image}:1.0.0") for env in ("staging", "prod")}
    bare = make_bare(git_http.root, f"sig{os.urandom(4).hex()}", files)
    git_credentials(monkeypatch)
    cfg = tmp_path / "imagebot.yaml"
    cfg.write_text(config(PROMOTE.format(image=image, key=key.public), tmp_path, registry_plain.host, git_http.url(bare)))
    runner = Runner(load([cfg]))
    repo = runner.cfg.images[0].repository.canonical_name
    for _ in range(2):  # staging takes the unsigned 1.1.0 (no gate there); the next pass offers it to prod
        report = runner.run_pass(only=[repo])
        assert not report.errors, report.errors
    assert f"{image}:1.1.0@{d['1.1.0']}" in read_file(bare, "main", "staging/deploy.yaml")
    assert f"{image}:1.0.0" in read_file(bare, "main", "prod/deploy.yaml")
    prod = dict((env, reason) for _, env, reason in report.decisions)["prod"]
    assert "held: 1.1.0: signature not verified (no signature)" in prod, prod

    tool.sign(f"{image}@{d['1.1.0']}", key)  # signed now: the listing shows its signature tag, the verdict is redone
    report = runner.run_pass(only=[repo])
    assert not report.errors, report.errors
    assert f"{image}:1.1.0@{d['1.1.0']}" in read_file(bare, "main", "prod/deploy.yaml")


SECRET_REF = """images:
  - name: app
    repository: {image}
    environments:
      dev:
        policy: {{semver: "^1"}}
        target: {{git: config, path: dev}}
      stage:
        policy: {{semver: "^1"}}
        target: {{git: config, path: stage}}
        verify: {{cosign: {{secretRef: {{name: cosign-pub, namespace: release}}}}}}
      prod:
        policy: {{semver: "^1"}}
        hold: true
        target: {{git: config, path: prod}}
        verify: {{cosign: {{secretRef: {{name: cosign-pub, namespace: release}}}}}}
"""


def test_a_secret_ref_gate_warns_at_validation_and_fails_run_only_where_a_tag_must_be_verified(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"sig/ref{os.urandom(3).hex()}"
    registry_plain.pusher().push(name, ["1.0.0", "1.1.0"], distinct=True)
    image = f"{registry_plain.host}/{name}"
    files = {f"{env}/deploy.yaml": deployment(f"{image}:1.0.0") for env in ("dev", "stage", "prod")}
    bare = make_bare(git_http.root, f"sig{os.urandom(4).hex()}", files)
    git_credentials(monkeypatch)
    cfg = tmp_path / "imagebot.yaml"
    cfg.write_text(config(SECRET_REF.format(image=image), tmp_path, registry_plain.host, git_http.url(bare)))

    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "validate", str(cfg)], out=out, err=err) == 0, err.getvalue()
    warned = err.getvalue()
    assert warned.count("warning: ") == 2 and "images[0].environments.stage.verify.cosign.secretRef" in warned, warned
    assert "Secret release/cosign-pub (cosign public keys) is read from the cluster" in warned
    assert "valid: 1 image(s), 3 environment(s), 1 git target(s), 2 warning(s)" in out.getvalue()

    out, err = io.StringIO(), io.StringIO()
    assert main(["run", "--once", "--config", str(cfg)], out=out, err=err) == 2
    report = Runner(load([cfg])).run_pass()
    assert len(report.errors) == 1, "\n".join(report.errors)
    failure = report.errors[0]
    assert failure.startswith("app stage: images[0].environments.stage.verify.cosign.secretRef: Secret release/"), failure
    assert "`imagebot run` cannot reach" in failure and "Traceback" not in err.getvalue()
    assert ":1.1.0" in read_file(bare, "main", "dev/deploy.yaml"), "the ungated environment is updated"
    assert read_file(bare, "main", "stage/deploy.yaml") == files["stage/deploy.yaml"], "nothing selected without the keys"
    assert read_file(bare, "main", "prod/deploy.yaml") == files["prod/deploy.yaml"]  # held: no tag to verify, no failure
