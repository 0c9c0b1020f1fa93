"""The verdict cache: a verified digest is never fetched again; a failure is re-checked after RECHECK_SECONDS or
at once when the listing's signature tags for it change; another key set is another verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imagebot.refs import parse_name
from imagebot.registry import signatures
from imagebot.registry.signatures import RECHECK_SECONDS, Found, MemoryVerdicts, SignatureChecker, signature_tags
from imagebot.registry.state import ScanState
from imagebot.verify import load_keys
from imagebot.verify.cosign import SimpleSigning
from tests.fixtures.cosign import simple_signing_payload

IMAGE = parse_name("registry.example/acme/app")
SIGNED, UNSIGNED = "sha256:" + "a" * 64, "sha256:" + "b" * 64


class Registries:
    def client(self, host: str) -> object:
        return object()


def keypair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


KEY = keypair()


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    key, _ = KEY
    calls: list[str] = []

    def fake_fetch(client: object, path: str, digest: str) -> Found:
        calls.append(digest)
        if digest != SIGNED:
            return Found((), (), 3)
        payload = simple_signing_payload("r/app", digest)
        return Found((SimpleSigning(payload, key.sign(payload, ec.ECDSA(hashes.SHA256()))),), (), 3)

    monkeypatch.setattr(signatures, "fetch", fake_fetch)
    return calls


def checker(tmp_path: Path, now: list[float], pem: bytes = KEY[1]) -> SignatureChecker:
    return SignatureChecker(Registries(), load_keys(pem, "k.pub"), ScanState(tmp_path / "s.db"), clock=lambda: now[0])  # type: ignore[arg-type]


def test_a_verified_digest_is_fetched_once_even_in_a_new_process(tmp_path: Path, fetched: list[str]) -> None:
    now = [1000.0]
    assert checker(tmp_path, now).check_digest(IMAGE, SIGNED)[0].ok
    now[0] += 10 * RECHECK_SECONDS
    verdict, fresh = checker(tmp_path, now).check_digest(IMAGE, SIGNED)
    assert verdict.ok and not fresh and fetched == [SIGNED]


def test_a_failure_is_trusted_for_a_while_then_checked_again(tmp_path: Path, fetched: list[str]) -> None:
    now = [1000.0]
    c = checker(tmp_path, now)
    verdict, fresh = c.check_digest(IMAGE, UNSIGNED)
    assert not verdict.ok and fresh and fetched == [UNSIGNED]
    now[0] += RECHECK_SECONDS - 1
    assert not c.check_digest(IMAGE, UNSIGNED)[1] and fetched == [UNSIGNED]
    now[0] += 2
    assert c.check_digest(IMAGE, UNSIGNED)[1] and fetched == [UNSIGNED, UNSIGNED]


def test_a_signature_tag_appearing_in_the_listing_rechecks_a_failure_at_once(tmp_path: Path, fetched: list[str]) -> None:
    now = [1000.0]
    c = checker(tmp_path, now)
    c.check_digest(IMAGE, UNSIGNED, ["1.0.0"])
    assert not c.check_digest(IMAGE, UNSIGNED, ["1.0.0", "2.0.0"])[1]  # other tags do not matter
    assert c.check_digest(IMAGE, UNSIGNED, ["1.0.0", "sha256-" + "b" * 64])[1]
    assert fetched == [UNSIGNED, UNSIGNED]
    sig = "sha256-" + "b" * 64 + ".sig"
    assert signature_tags(UNSIGNED, [sig, "x", "sha256-" + "a" * 64]) == (sig,)


def test_another_key_set_is_another_verdict(tmp_path: Path, fetched: list[str]) -> None:
    now = [1000.0]
    assert checker(tmp_path, now).check_digest(IMAGE, SIGNED)[0].ok
    verdict, fresh = checker(tmp_path, now, keypair()[1]).check_digest(IMAGE, SIGNED)
    assert fresh and not verdict.ok and fetched == [SIGNED, SIGNED]


def test_the_controllers_memory_cache_keeps_verdicts_per_key_set_and_forgets_the_oldest_past_its_limit(
    fetched: list[str],
) -> None:
    now = [1000.0]
    store = MemoryVerdicts(limit=2)
    mine = SignatureChecker(Registries(), load_keys(KEY[1], "k.pub"), store, clock=lambda: now[0])  # type: ignore[arg-type]
    assert mine.check_digest(IMAGE, SIGNED)[1]
    assert not mine.check_digest(IMAGE, SIGNED)[1], "the second from the cache"
    assert fetched == [SIGNED]
    now[0] += 10 * RECHECK_SECONDS
    assert not mine.check_digest(IMAGE, UNSIGNED)[0].ok
    assert not mine.check_digest(IMAGE, SIGNED)[1], "a verified digest is never fetched again"
    other = SignatureChecker(Registries(), load_keys(keypair()[1], "o.pub"), store, clock=lambda: now[0])  # type: ignore[arg-type]
    assert other.check_digest(IMAGE, SIGNED)[1], "another key set: another verdict"
    assert not mine.check_digest(IMAGE, UNSIGNED)[1]
    assert mine.check_digest(IMAGE, SIGNED)[1], "past the limit the oldest verdict went first"
    assert fetched == [SIGNED, UNSIGNED, SIGNED, SIGNED]
