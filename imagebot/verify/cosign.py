"""cosign signature verification (pure: bytes in, a verdict out; fetching is the registry adapter's).

cosign writes a signature in one of two layouts, and we read both:

- **legacy** (cosign 1–2, and cosign 3 with ``--new-bundle-format=false``): a manifest under the tag
  ``sha256-<hex>.sig`` whose layers are *simple signing* payloads
  (``application/vnd.dev.cosign.simplesigning.v1+json``), each with its signature in the layer
  annotation ``dev.cosignproject.cosign/signature`` (base64). The key signs the payload bytes; the
  payload names the image in ``critical.image.docker-manifest-digest``.
- **Sigstore bundle** (cosign 3's default): an OCI 1.1 artifact whose ``subject`` is the image and
  whose layer is a bundle (``application/vnd.dev.sigstore.bundle.v0.3+json``) holding a DSSE
  envelope; the key signs the envelope's PAE (``DSSEv1 <len> <type> <len> <payload>``), and the
  payload is an in-toto statement whose ``subject[].digest.sha256`` names the image. It is found
  through the referrers API or, on registries without it, the index under the tag ``sha256-<hex>``.

A signature counts only when a configured key verifies it **and** its payload names the very digest
being checked: a valid signature copied onto another image is a digest mismatch, never a pass.
Keys: ECDSA P-256 (SHA-256) and Ed25519 — pure, or Ed25519ph as cosign signs with such keys
(:mod:`imagebot.verify.ed25519ph`) — PEM ``PUBLIC KEY`` blocks as ``cosign generate-key-pair`` and
``cosign import-key-pair`` write them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from imagebot.errors import ImagebotError
from imagebot.verify import ed25519ph

if TYPE_CHECKING:  # cryptography is imported when a key is loaded: `run` without a signature gate never pays for it
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"  # v0.1 … v0.3 (+json)
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
MAX_PEM = 64 * 1024  # a key file is a few hundred bytes
MAX_SIGNATURES = 16  # signature layers / referrers / DSSE signatures looked at per image

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]+?-----END PUBLIC KEY-----", re.ASCII)


class VerifyError(ImagebotError):
    """A key is unusable (not PEM, not ECDSA P-256 or Ed25519): a configuration error (exit 2)."""


class Status(StrEnum):
    """Why a digest passes the gate or not (the words ``--explain`` and status print)."""

    VERIFIED = "verified"
    NO_SIGNATURE = "no signature"
    KEY_MISMATCH = "key mismatch"  # signatures exist, none verifies with a configured key
    DIGEST_MISMATCH = "digest mismatch"  # a configured key signed it, for another image
    MALFORMED = "malformed signature"  # signature objects that are not what cosign writes


@dataclass(frozen=True, slots=True)
class Verification:
    status: Status
    detail: str = ""  # which layout, which key, what the payload named

    @property
    def ok(self) -> bool:
        return self.status is Status.VERIFIED

    def describe(self) -> str:
        """``signature verified`` or ``signature not verified (no signature)``."""
        return "signature verified" if self.ok else f"signature not verified ({self.status})"


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One trusted key: its PEM source name and a fingerprint (sha256 of the DER SubjectPublicKeyInfo)."""

    name: str
    fingerprint: str
    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

    def verifies(self, signature: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                try:
                    self.key.verify(signature, data)
                except InvalidSignature:  # cosign signs with Ed25519 keys as Ed25519ph
                    from cryptography.hazmat.primitives import serialization

                    raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                    return ed25519ph.verify(raw, data, signature)
            else:
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


def load_keys(pem: bytes, name: str) -> tuple[PublicKey, ...]:
    """Every ``PUBLIC KEY`` block of a PEM file; raises VerifyError naming ``name`` and what is wrong."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if len(pem) > MAX_PEM:
        raise VerifyError(f"{name}: {len(pem):,} bytes is too large for a public key file (at most {MAX_PEM:,})")
    blocks = _PEM_BLOCK.findall(pem)
    if not blocks:
        raise VerifyError(f"{name}: no PEM 'PUBLIC KEY' block (give the .pub file cosign generate-key-pair writes)")
    out = []
    for n, block in enumerate(blocks, 1):
        where = name if len(blocks) == 1 else f"{name} (key {n})"
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise VerifyError(f"{where}: not a readable public key ({exc})") from None
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise VerifyError(f"{where}: ECDSA on {key.curve.name} is not supported (use P-256, as cosign does)")
        elif not isinstance(key, ed25519.Ed25519PublicKey):
            raise VerifyError(f"{where}: a {type(key).__name__.removeprefix('_')} is not supported (use ECDSA P-256 or Ed25519)")
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        out.append(PublicKey(where, "sha256:" + hashlib.sha256(der).hexdigest(), key))
    return tuple(out)


def secret_keys(data: Mapping[str, bytes], secret: str) -> tuple[PublicKey, ...]:
    """Every key of a Secret's ``*.pub`` entries (sorted by entry name), the convention of Flux's
    OCIRepository ``spec.verify.secretRef``; other entries are ignored. Raises VerifyError naming the Secret
    and the entry when one is unusable, or when there is no ``*.pub`` entry at all."""
    names = sorted(k for k in data if k.endswith(".pub"))
    if not names:
        have = ", ".join(sorted(data)[:10]) or "none"
        raise VerifyError(f"Secret {secret}: no *.pub entry holding a cosign public key (entries: {have})")
    return tuple(k for n in names for k in load_keys(data[n], f"Secret {secret} entry {n}"))


def keyset_id(keys: Iterable[PublicKey]) -> str:
    """One id for a set of keys (order-free): cached verdicts are valid for exactly this set."""
    return hashlib.sha256("\n".join(sorted({k.fingerprint for k in keys})).encode()).hexdigest()[:32]


# ------------------------------------------------------------------ evidence (what the adapter fetched)


@dataclass(frozen=True, slots=True)
class SimpleSigning:
    """A legacy ``.sig`` layer: the payload bytes and its (decoded) signature."""

    payload: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class DsseBundle:
    """A Sigstore bundle's DSSE envelope: the payload type, payload bytes and its signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]


Evidence = SimpleSigning | DsseBundle


class Malformed(ValueError):
    """A signature object that is not what cosign writes (the adapter reports it, never crashes)."""


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than the parser recurses
        raise Malformed(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise Malformed(f"{what} is not a JSON object")
    return doc


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise Malformed(f"{what} is missing")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"{what} is not base64") from None


def _digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise Malformed(f"{what} is not a sha256 digest")
    return value


@dataclass(frozen=True, slots=True)
class SignatureLayer:
    """A legacy ``.sig`` manifest's layer: the payload blob to fetch and its signature."""

    digest: str
    signature: bytes


def legacy_layers(manifest: bytes) -> tuple[SignatureLayer, ...]:
    """The simple-signing layers of a ``sha256-<hex>.sig`` manifest (at most MAX_SIGNATURES)."""
    doc = _json_object(manifest, "the .sig manifest")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise Malformed("the .sig manifest has no layers")
    out = []
    for layer in layers:
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING:
            continue
        notes = layer.get("annotations")
        sig = notes.get(SIGNATURE_ANNOTATION) if isinstance(notes, dict) else None
        out.append(SignatureLayer(_digest(layer.get("digest"), "a .sig layer's digest"), _b64(sig, "a .sig layer's signature")))
        if len(out) == MAX_SIGNATURES:
            break
    return tuple(out)


def referrer_digests(index: bytes) -> tuple[str, ...]:
    """The manifests a referrers answer (or its fallback ``sha256-<hex>`` tag) lists.

    Every descriptor is returned whatever its ``artifactType``: cosign 3 records the fallback index's
    entries as ``application/vnd.oci.empty.v1+json``, so only the manifest itself says it is a bundle.
    """
    doc = _json_object(index, "the referrers index")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise Malformed("the referrers index has no manifests")
    out: list[str] = []
    for desc in manifests:
        if not isinstance(desc, dict):
            continue
        kind = desc.get("artifactType")
        if isinstance(kind, str) and kind.startswith("application/") and not _maybe_bundle(kind):
            continue  # an SBOM, an attestation of another tool: not ours to read
        d = _digest(desc.get("digest"), "a referrer's digest")
        if d not in out:
            out.append(d)
        if len(out) == MAX_SIGNATURES:
            break
    return tuple(out)


def _maybe_bundle(kind: str) -> bool:
    return kind.startswith(BUNDLE_PREFIX) or kind == "application/vnd.oci.empty.v1+json"


def bundle_layer(manifest: bytes, subject: str) -> str | None:
    """The bundle layer's digest of a referrer manifest, or None when it is no Sigstore bundle.

    A manifest whose ``subject`` is another image is not evidence for this one (None)."""
    doc = _json_object(manifest, "a referrer manifest")
    kind = doc.get("artifactType")
    config = doc.get("config")
    if not isinstance(kind, str) and isinstance(config, dict):
        kind = config.get("mediaType")
    subj = doc.get("subject")
    if isinstance(subj, dict) and subj.get("digest") != subject:
        return None
    layers = doc.get("layers")
    for layer in layers if isinstance(layers, list) else []:
        if isinstance(layer, dict) and str(layer.get("mediaType", "")).startswith(BUNDLE_PREFIX):
            return _digest(layer.get("digest"), "the bundle layer's digest")
    if isinstance(kind, str) and kind.startswith(BUNDLE_PREFIX):
        raise Malformed("a Sigstore bundle manifest without a bundle layer")
    return None


def parse_bundle(data: bytes) -> DsseBundle:
    """A Sigstore bundle's DSSE envelope (message-signature bundles carry no image digest: Malformed)."""
    doc = _json_object(data, "the Sigstore bundle")
    env = doc.get("dsseEnvelope")
    if not isinstance(env, dict):
        raise Malformed("the Sigstore bundle has no DSSE envelope")
    payload_type = env.get("payloadType")
    if not isinstance(payload_type, str):
        raise Malformed("the DSSE envelope has no payloadType")
    payload = _b64(env.get("payload"), "the DSSE payload")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise Malformed("the DSSE envelope has no signatures")
    out = tuple(_b64(s.get("sig") if isinstance(s, dict) else None, "a DSSE signature") for s in sigs[:MAX_SIGNATURES])
    return DsseBundle(payload_type, payload, out)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the key signs."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def signed_digests(evidence: Evidence) -> tuple[str, ...]:
    """The image digests a (verified) payload names; raises Malformed when it names none."""
    if isinstance(evidence, SimpleSigning):
        doc = _json_object(evidence.payload, "the simple-signing payload")
        critical = doc.get("critical")
        image = critical.get("image") if isinstance(critical, dict) else None
        value = image.get("docker-manifest-digest") if isinstance(image, dict) else None
        if not isinstance(value, str):
            raise Malformed("the simple-signing payload names no critical.image.docker-manifest-digest")
        return (value,)
    if evidence.payload_type != IN_TOTO:
        raise Malformed(f"the DSSE payload type {evidence.payload_type[:80]!r} is not an in-toto statement")
    doc = _json_object(evidence.payload, "the in-toto statement")
    subjects = doc.get("subject")
    out = []
    for s in subjects if isinstance(subjects, list) else []:
        d = s.get("digest") if isinstance(s, dict) else None
        hexpart = d.get("sha256") if isinstance(d, dict) else None
        if isinstance(hexpart, str):
            out.append("sha256:" + hexpart)
    if not out:
        raise Malformed("the in-toto statement names no sha256 subject")
    return tuple(out)


def _signed_data(evidence: Evidence) -> tuple[bytes, tuple[bytes, ...]]:
    if isinstance(evidence, SimpleSigning):
        return evidence.payload, (evidence.signature,)
    return pae(evidence.payload_type, evidence.payload), evidence.signatures


def verify(digest: str, evidence: Sequence[Evidence], keys: Sequence[PublicKey], malformed: Sequence[str] = ()) -> Verification:
    """The verdict for image ``digest`` from what was found for it.

    Verified when a configured key verifies a signature whose payload names ``digest``. Otherwise the
    most telling failure: a digest mismatch (a key of ours signed another image), a key mismatch
    (signatures, none of ours), a malformed signature (``malformed``: what the adapter could not read),
    or no signature at all.
    """
    mismatch: str | None = None
    unreadable: str | None = None
    for ev in evidence:
        layout = "legacy .sig" if isinstance(ev, SimpleSigning) else "Sigstore bundle"
        data, signatures = _signed_data(ev)
        signer = next((k for k in keys for sig in signatures if k.verifies(sig, data)), None)
        if signer is None:
            continue
        try:
            named = signed_digests(ev)
        except Malformed as exc:
            unreadable = unreadable or f"{layout}: {exc}"
            continue
        if digest in named:
            return Verification(Status.VERIFIED, f"{layout} signed by {signer.name}")
        mismatch = mismatch or f"{layout} signed by {signer.name} names {named[0][:19]}…, not {digest[:19]}…"
    if mismatch is not None:
        return Verification(Status.DIGEST_MISMATCH, mismatch)
    if unreadable is not None:
        return Verification(Status.MALFORMED, unreadable)
    if evidence:
        n = len(evidence)
        return Verification(Status.KEY_MISMATCH, f"{n} signature(s), none verifies with the configured key(s)")
    if malformed:
        return Verification(Status.MALFORMED, "; ".join(malformed)[:300])
    return Verification(Status.NO_SIGNATURE, "neither a .sig tag nor a Sigstore bundle referrer")
