"""Signature reads hold the registry client's limits: one overall deadline, a byte cap per answer, and a
registry's garbage is a verdict (malformed) or a registry error — never a hang, a traceback or a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagebot.errors import RegistryError
from imagebot.refs import parse_name
from imagebot.registry import Registries, RegistrySettings
from imagebot.registry.signatures import SIGNATURE_CAP, SignatureChecker, fetch
from imagebot.verify import Status, load_keys
from tests.fixtures.scripted import Hostile, json_answer

DATA = Path(__file__).resolve().parents[1] / "unit" / "verify" / "testdata"

DIGEST = "sha256:" + "1" * 64
SIG = "/v2/sb/app/manifests/sha256-" + "1" * 64 + ".sig"


@pytest.fixture
def hostile() -> Hostile:
    h = Hostile()
    yield h  # type: ignore[misc]
    h.stop()


def client(hostile: Hostile, deadline: float = 30.0):  # type: ignore[no-untyped-def]
    return Registries(RegistrySettings(host="", plain_http=True, deadline=deadline, timeout=1.0)).client(hostile.host)


def test_a_signature_manifest_that_never_ends_fails_at_the_deadline(hostile: Hostile) -> None:
    hostile.on(SIG, hostile.drip_body(every=0.05))
    with pytest.raises(RegistryError, match="deadline"):
        fetch(client(hostile, deadline=1.5), "sb/app", DIGEST)


def test_an_oversized_signature_answer_is_refused_unread(hostile: Hostile) -> None:
    hostile.on(SIG, hostile.huge_body(SIGNATURE_CAP * 4, declare_length=False))
    with pytest.raises(RegistryError, match="larger than"):
        fetch(client(hostile), "sb/app", DIGEST)


def test_garbage_signature_objects_are_a_malformed_verdict_not_a_pass(hostile: Hostile) -> None:
    hostile.on(SIG, json_answer(200, b'{"layers": "nope"}'))
    hostile.on(f"/v2/sb/app/referrers/{DIGEST}", json_answer(200, json.dumps({"manifests": [{"digest": "sha256:zz"}]}).encode()))
    hostile.on("/v2/sb/app/manifests/1.0.0", json_answer(200, b"{}", {"Docker-Content-Digest": DIGEST}))
    checker = SignatureChecker(
        Registries(RegistrySettings(host="", plain_http=True)), load_keys((DATA / "cosign.pub").read_bytes(), "cosign.pub")
    )
    _, verdict, fetched = checker.check(parse_name(f"{hostile.host}/sb/app"), "1.0.0")
    assert fetched and verdict.status is Status.MALFORMED and "legacy .sig" in verdict.detail


def test_a_blob_that_does_not_match_its_digest_is_a_registry_error(hostile: Hostile) -> None:
    payload_digest = "sha256:" + "2" * 64
    manifest = {
        "layers": [
            {
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": payload_digest,
                "annotations": {"dev.cosignproject.cosign/signature": "AAAA"},
            }
        ]
    }
    hostile.on(SIG, json_answer(200, json.dumps(manifest).encode()))
    hostile.on(f"/v2/sb/app/blobs/{payload_digest}", json_answer(200, b"{}"))
    with pytest.raises(RegistryError, match="does not match its digest"):
        fetch(client(hostile), "sb/app", DIGEST)
