"""The pure cosign verifier on golden signatures made by the real cosign 3 (testdata/README), and by hand."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from imagebot.verify import Status, VerifyError, keyset_id, load_keys, secret_keys
from imagebot.verify.cosign import (
    DsseBundle,
    Malformed,
    SimpleSigning,
    bundle_layer,
    legacy_layers,
    parse_bundle,
    referrer_digests,
    signed_digests,
    verify,
)
from tests.fixtures.cosign import in_toto_statement, simple_signing_payload

DATA = Path(__file__).parent / "testdata"
OTHER = "sha256:" + "ab" * 32


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()


def digest_of(name: str) -> str:
    return golden(name).decode().strip()


COSIGN_KEYS = load_keys(golden("cosign.pub"), "cosign.pub")


def legacy_evidence() -> SimpleSigning:
    (layer,) = legacy_layers(golden("legacy-1.1.0.sig.json"))
    return SimpleSigning(golden("legacy-1.1.0.payload.json"), layer.signature)


def bundle_evidence() -> DsseBundle:
    return parse_bundle(golden("bundle-1.0.0.json"))


def pem(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def test_a_legacy_signature_made_by_cosign_verifies_for_its_digest() -> None:
    v = verify(digest_of("legacy-1.1.0.digest"), [legacy_evidence()], COSIGN_KEYS)
    assert v.status is Status.VERIFIED and "legacy" in v.detail


def test_a_bundle_made_by_cosign_3_verifies_for_its_digest() -> None:
    v = verify(digest_of("bundle-1.0.0.digest"), [bundle_evidence()], COSIGN_KEYS)
    assert v.status is Status.VERIFIED and "bundle" in v.detail


def test_the_fallback_index_and_referrer_manifest_lead_to_the_bundle_blob() -> None:
    digest = digest_of("bundle-1.0.0.digest")
    (ref,) = referrer_digests(golden("bundle-1.0.0.index.json"))  # cosign lists it as an empty.v1 artifact
    assert ref.startswith("sha256:")
    layer = bundle_layer(golden("bundle-1.0.0.manifest.json"), digest)
    assert layer == json.loads(golden("bundle-1.0.0.manifest.json"))["layers"][0]["digest"]
    assert bundle_layer(golden("bundle-1.0.0.manifest.json"), OTHER) is None  # a referrer of another image


@pytest.mark.parametrize("evidence", [legacy_evidence, bundle_evidence], ids=["legacy", "bundle"])
def test_a_valid_signature_of_another_digest_is_a_digest_mismatch(evidence) -> None:  # type: ignore[no-untyped-def]
    assert verify(OTHER, [evidence()], COSIGN_KEYS).status is Status.DIGEST_MISMATCH


@pytest.mark.parametrize("evidence", [legacy_evidence, bundle_evidence], ids=["legacy", "bundle"])
def test_another_key_is_a_key_mismatch(evidence) -> None:  # type: ignore[no-untyped-def]
    keys = load_keys(pem(ec.generate_private_key(ec.SECP256R1()).public_key()), "other.pub")
    digest = digest_of("legacy-1.1.0.digest" if evidence is legacy_evidence else "bundle-1.0.0.digest")
    assert verify(digest, [evidence()], keys).status is Status.KEY_MISMATCH


def test_a_payload_rewritten_to_name_another_digest_no_longer_verifies() -> None:
    ev = legacy_evidence()
    forged = ev.payload.replace(digest_of("legacy-1.1.0.digest").encode(), OTHER.encode())
    assert forged != ev.payload
    assert verify(OTHER, [SimpleSigning(forged, ev.signature)], COSIGN_KEYS).status is Status.KEY_MISMATCH


def test_nothing_found_is_no_signature_and_unreadable_objects_are_malformed() -> None:
    assert verify(OTHER, [], COSIGN_KEYS).status is Status.NO_SIGNATURE
    assert verify(OTHER, [], COSIGN_KEYS, ["legacy .sig: not JSON"]).status is Status.MALFORMED
    assert verify(OTHER, [], COSIGN_KEYS).describe() == "signature not verified (no signature)"


def test_one_verifying_signature_among_others_passes() -> None:
    digest = digest_of("legacy-1.1.0.digest")
    stranger = SimpleSigning(b"{}", b"\x00" * 64)
    assert verify(digest, [stranger, legacy_evidence()], COSIGN_KEYS).ok


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "bundle"])
def test_ed25519_keys_verify_in_both_layouts(legacy: bool) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    keys = load_keys(pem(key.public_key()), "ed25519.pub")
    digest = "sha256:" + "cd" * 32
    if legacy:
        payload = simple_signing_payload("r/app", digest)
        ev: SimpleSigning | DsseBundle = SimpleSigning(payload, key.sign(payload))
    else:
        from imagebot.verify.cosign import IN_TOTO, pae

        stmt = in_toto_statement(digest)
        ev = DsseBundle(IN_TOTO, stmt, (key.sign(pae(IN_TOTO, stmt)),))
    assert verify(digest, [ev], keys).ok
    assert verify(OTHER, [ev], keys).status is Status.DIGEST_MISMATCH
    assert verify(digest, [ev], COSIGN_KEYS).status is Status.KEY_MISMATCH


def test_a_key_file_may_hold_several_keys_and_the_keyset_id_ignores_order() -> None:
    a, b = pem(ec.generate_private_key(ec.SECP256R1()).public_key()), pem(ed25519.Ed25519PrivateKey.generate().public_key())
    both = load_keys(a + b"\n" + b, "keys.pem")
    assert [k.name for k in both] == ["keys.pem (key 1)", "keys.pem (key 2)"]
    assert keyset_id(both) == keyset_id(reversed(both)) != keyset_id(both[:1])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a key", "no PEM 'PUBLIC KEY' block"),
        (pem(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()), "not supported"),
        (pem(ec.generate_private_key(ec.SECP384R1()).public_key()), "secp384r1 is not supported"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a readable public key"),
        (b"x" * 70_000, "too large"),
    ],
    ids=["garbage", "rsa", "p384", "bad-der", "huge"],
)
def test_unusable_keys_are_named_errors(data: bytes, message: str) -> None:
    with pytest.raises(VerifyError, match=message):
        load_keys(data, "k.pub")


# ---- the parsers take whatever a registry sends: Malformed or a value, never another exception

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
documents = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "layers": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "mediaType": st.sampled_from(["application/vnd.dev.cosign.simplesigning.v1+json", "application/x", 3]),
                        "digest": st.sampled_from(["sha256:" + "0" * 64, "sha256:xyz", None]),
                        "annotations": json_values,
                    },
                ),
                max_size=3,
            ),
            "manifests": st.lists(json_values, max_size=3),
            "subject": json_values,
            "artifactType": st.sampled_from(["application/vnd.dev.sigstore.bundle.v0.3+json", 7, None]),
            "dsseEnvelope": json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_parsers_answer_malformed_or_a_value_for_any_input(data: bytes) -> None:
    for parse in (legacy_layers, referrer_digests, parse_bundle, lambda d: bundle_layer(d, OTHER)):
        with contextlib.suppress(Malformed):
            parse(data)
    for ev in (SimpleSigning(data, b""), DsseBundle("application/vnd.in-toto+json", data, ())):
        with contextlib.suppress(Malformed):
            signed_digests(ev)


def test_json_nested_deeper_than_the_parser_recurses_is_malformed_not_a_crash() -> None:
    """The registry client's twin (registry.client.parse_json): ``[[[[…`` makes json.loads raise RecursionError."""
    deep = b"[" * 200_000 + b"]" * 200_000
    for parse in (legacy_layers, referrer_digests, parse_bundle, lambda d: bundle_layer(d, OTHER)):
        with pytest.raises(Malformed, match="not JSON"):
            parse(deep)
    for ev in (SimpleSigning(deep, b""), DsseBundle("application/vnd.in-toto+json", deep, ())):
        with pytest.raises(Malformed, match="not JSON"):
            signed_digests(ev)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_a_signed_payload_verifies_only_for_the_digest_it_names(signed: bytes, asked: bytes) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    keys = load_keys(pem(key.public_key()), "k")
    named, wanted = "sha256:" + signed.hex(), "sha256:" + asked.hex()
    payload = simple_signing_payload("r/app", named)
    verdict = verify(wanted, [SimpleSigning(payload, key.sign(payload))], keys)
    assert verdict.ok == (named == wanted)
    assert verify(named, [SimpleSigning(payload, key.sign(payload))], keys).ok


def test_base64_of_the_golden_signature_round_trips() -> None:
    (layer,) = legacy_layers(golden("legacy-1.1.0.sig.json"))
    note = json.loads(golden("legacy-1.1.0.sig.json"))["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"]
    assert base64.b64encode(layer.signature).decode() == note


# ---- Ed25519ph: what cosign makes of an Ed25519 key


def test_rfc_8032_ed25519ph_test_vector_verifies_and_a_flipped_bit_does_not() -> None:
    from imagebot.verify import ed25519ph

    public = bytes.fromhex("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
    sig = bytes.fromhex(
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
        "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
    )
    assert ed25519ph.verify(public, b"abc", sig)
    assert not ed25519ph.verify(public, b"abd", sig)
    assert not ed25519ph.verify(public, b"abc", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not ed25519ph.verify(public, b"abc", sig[:32] + (2**253).to_bytes(32, "little"))  # S >= L
    assert not ed25519ph.verify(b"\xff" * 32, b"abc", sig)  # not a point encoding


def test_pure_ed25519_and_ed25519ph_signatures_never_stand_for_each_other() -> None:
    from imagebot.verify import ed25519ph

    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert not ed25519ph.verify(raw, b"payload", key.sign(b"payload"))


@pytest.mark.parametrize("layout", ["legacy", "bundle"])
def test_ed25519_signatures_made_by_cosign_verify(layout: str) -> None:
    keys = load_keys(golden("ed25519.pub"), "ed25519.pub")
    digest = digest_of("ed25519.digest")
    if layout == "legacy":
        ev: SimpleSigning | DsseBundle = SimpleSigning(
            golden("ed25519-legacy.payload.json"), base64.b64decode(golden("ed25519-legacy.sig"))
        )
    else:
        ev = parse_bundle(golden("ed25519-bundle.json"))
    assert verify(digest, [ev], keys).ok
    assert verify(OTHER, [ev], keys).status is Status.DIGEST_MISMATCH
    assert verify(digest, [ev], COSIGN_KEYS).status is Status.KEY_MISMATCH


def test_a_secrets_pub_entries_are_the_keys_and_its_problems_name_the_secret_and_entry() -> None:
    a = ec.generate_private_key(ec.SECP256R1()).public_key()
    b = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = [k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) for k in (a, b)]
    keys = secret_keys({"z.pub": pem[0], "a.pub": pem[1], "cosign.key": b"private: not read", "README": b"x"}, "ns/keys")
    assert [k.name for k in keys] == ["Secret ns/keys entry a.pub", "Secret ns/keys entry z.pub"]
    with pytest.raises(VerifyError, match=r"Secret ns/keys: no \*\.pub entry .*\(entries: cosign\.key\)"):
        secret_keys({"cosign.key": b"x"}, "ns/keys")
    with pytest.raises(VerifyError, match=r"Secret ns/keys entry bad\.pub: no PEM 'PUBLIC KEY' block"):
        secret_keys({"good.pub": pem[0], "bad.pub": b"hello"}, "ns/keys")
