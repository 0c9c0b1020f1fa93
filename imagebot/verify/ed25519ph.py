"""Ed25519ph verification (RFC 8032 §5.1, the pre-hashed variant), which ``cryptography`` does not offer.

cosign signs with an Ed25519 key as Ed25519ph — the sigstore libraries' default for such keys since 2024
(``LoadSignerVerifier`` returns the ``ph`` variant): the signature is over SHA-512 of the message, with
the RFC's ``dom2(1, "")`` prefix. That holds for both layouts (the simple-signing payload, the DSSE PAE).
This is the RFC's own reference verification (§6), for public data only (no secret, so no timing
concern): decode A and R (rejecting non-canonical encodings), require S < L, and check
``[S]B = R + [k]A`` with ``k = SHA-512(dom2 ‖ R ‖ A ‖ SHA-512(M)) mod L``. The prefix keeps the two
variants apart: an Ed25519 signature never verifies as Ed25519ph, nor the reverse.
"""

from __future__ import annotations

import hashlib

Point = tuple[int, int, int, int]  # extended homogeneous coordinates (X, Y, Z, T)

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_DOM2_PH = b"SigEd25519 no Ed25519 collisions" + bytes([1, 0])  # dom2(phflag=1, context="")


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: Point) -> Point:
    q: Point = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(s: bytes) -> Point | None:
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
assert _GX is not None
_G: Point = (_GX, _GY, 1, _GX * _GY % _P)


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is an Ed25519ph signature of ``message`` by the 32-byte key ``public``."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public), _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(_DOM2_PH + signature[:32] + public + hashlib.sha512(message).digest()).digest(), "little")
    return _equal(_mul(s, _G), _add(r, _mul(k % _L, a)))
