"""`verify: {cosign: …}` in the native config: image-wide, overridden per environment, keys checked at load."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from imagebot.cli import main
from imagebot.config.load import load
from imagebot.runtime.runner import Runner
from imagebot.verify import VerifyError
from tests.unit.config.test_validation import mutate, native, write

IMG = ("images", 0)
DEV = (*IMG, "environments", "dev")


def pub(tmp: Path, name: str, key: object) -> str:
    path = tmp / name
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # type: ignore[attr-defined]
    return str(path)


def test_the_image_gate_applies_to_its_environments_and_an_environment_may_set_its_own(tmp_path: Path) -> None:
    a = pub(tmp_path, "a.pub", ec.generate_private_key(ec.SECP256R1()).public_key())
    b = pub(tmp_path, "b.pub", ec.generate_private_key(ec.SECP256R1()).public_key())
    doc = mutate(native(tmp_path), (*IMG, "verify"), {"cosign": {"key": a}})
    doc = mutate(doc, (*DEV, "verify"), {"cosign": {"keys": [a, b], "maxPerPass": 3}})
    cfg = load([write(tmp_path, doc)])
    envs = {e.name: e for e in cfg.images[0].environments}
    assert envs["prod"].verify is not None and envs["prod"].verify.keys == (Path(a),)
    assert envs["dev"].verify is not None and envs["dev"].verify.keys == (Path(a), Path(b))
    assert envs["dev"].verify.max_per_pass == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (lambda f: {"cosign": {}}, "verify.cosign: give the public key"),
        (lambda f: {"cosign": {"secretRef": {"name": "cosign-pub"}}}, "verify.cosign.secretRef.namespace: required"),
        (lambda f: {"cosign": {"secretRef": "cosign-pub"}}, "verify.cosign.secretRef: must be a mapping"),
        (lambda f: {"cosign": {"secretRef": {"name": "k", "namespace": "n", "key": "x"}}}, "secretRef.key: unknown key"),
        (lambda f: {"cosign": {"key": "/nonexistent/cosign.pub"}}, "verify.cosign.key: cannot read /nonexistent/cosign.pub"),
        (lambda f: {"cosign": {"key": f["rsa"]}}, "is not supported (use ECDSA P-256 or Ed25519)"),
        (lambda f: {"cosign": {"keys": [f["bad"]]}}, "no PEM 'PUBLIC KEY' block"),
        (lambda f: {"cosign": {"key": f["ok"], "maxPerPass": 0}}, "maxPerPass: must be greater than 0"),
        (lambda f: {"notary": {}}, "verify.notary: unknown key (allowed: cosign)"),
        (lambda f: {"cosign": {"key": 7}}, "verify.cosign.key: must be a string"),
    ],
    ids=["no-key", "secret-ref-namespace", "secret-ref-string", "secret-ref-unknown", "missing-file", "rsa", "not-pem",
         "zero-limit", "unknown-verifier", "not-a-string"],
)
def test_a_bad_gate_is_a_validation_error_naming_the_field(
    tmp_path: Path, value: Callable[[dict[str, str]], dict[str, Any]], message: str
) -> None:
    files = {
        "rsa": pub(tmp_path, "rsa.pub", rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()),
        "ok": pub(tmp_path, "ok.pub", ec.generate_private_key(ec.SECP256R1()).public_key()),
        "bad": str(tmp_path / "bad.pub"),
    }
    (tmp_path / "bad.pub").write_text("hello\n")
    doc = mutate(native(tmp_path), (*IMG, "verify"), value(files))
    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "validate", str(write(tmp_path, doc))], out=out, err=err) == 2
    assert message in err.getvalue() and "images[0].verify" in err.getvalue(), err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_a_key_file_gone_after_validation_stops_run_at_start_with_exit_2(tmp_path: Path) -> None:
    a = pub(tmp_path, "a.pub", ec.generate_private_key(ec.SECP256R1()).public_key())
    cfg = load([write(tmp_path, mutate(native(tmp_path), (*IMG, "verify"), {"cosign": {"key": a}}))])
    Path(a).unlink()
    with pytest.raises(VerifyError, match=r"a\.pub"):
        Runner(cfg)


def test_a_secret_ref_is_valid_with_a_warning_naming_the_secret(tmp_path: Path) -> None:
    a = pub(tmp_path, "a.pub", ec.generate_private_key(ec.SECP256R1()).public_key())
    ref = {"name": "cosign-pub", "namespace": "release"}
    doc = mutate(native(tmp_path), (*IMG, "verify"), {"cosign": {"secretRef": ref}})
    doc = mutate(doc, (*DEV, "verify"), {"cosign": {"key": a, "secretRef": ref}})
    cfg = load([write(tmp_path, doc)])
    envs = {e.name: e.verify for e in cfg.images[0].environments}
    assert envs["prod"] is not None and envs["prod"].keys == () and envs["prod"].secret is not None
    assert envs["prod"].secret.target == "Secret release/cosign-pub"
    assert envs["dev"] is not None and envs["dev"].keys == (Path(a),) and envs["dev"].secret is not None
    assert len(cfg.warnings) == 2 and all("(cosign public keys) is read from the cluster" in w for w in cfg.warnings)
    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "validate", str(write(tmp_path, doc))], out=out, err=err) == 0
    assert "warning: " in err.getvalue() and "images[0].verify.cosign.secretRef" in err.getvalue(), err.getvalue()
    Runner(cfg)  # starts: the Secret is needed only when a tag must be verified
