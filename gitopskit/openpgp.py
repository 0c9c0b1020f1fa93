"""Sign git commits with an OpenPGP key held in memory (Flux's ``signingKey``: ``git.asc`` + ``passphrase``).

Flux signs with go-git: the commit object without its signature is signed (detached, armored) and the
signature stored in the commit's ``gpgsig`` header, which ``git verify-commit`` checks. Here the signing is
done by the ``gpg`` binary (Debian's gnupg) rather than a pure-Python library: PGPy, the only mature one, is
unmaintained (no release since 2022, broken on current Pythons without a fork), and gpg is what verifies the
signatures anyway. Each signature gets a throwaway ``GNUPGHOME`` (a private 0700 directory): the key is imported
there and nowhere else, the payload signed, the agent stopped and the directory removed — whatever happens.
The passphrase travels through a pipe (``--passphrase-fd 0``), never argv or the environment; every gpg call has
a deadline. Failures are a :class:`SigningError` that names the key's origin, never the key or passphrase.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gitopskit.errors import KitError

DEFAULT_TIMEOUT = 30.0  # seconds for a whole signature: import, sign, stop the agent


class SigningError(KitError):
    """The key does not import, the passphrase is wrong, or gpg failed or timed out: nothing was signed."""


@dataclass(frozen=True, slots=True)
class OpenPGPKey:
    armored: str = field(repr=False)  # an ASCII-armored secret key
    passphrase: str = field(default="", repr=False)
    origin: str = "the signing key"  # for messages, e.g. "Secret flux-system/signing-key"

    def __repr__(self) -> str:
        return f"OpenPGPKey(origin={self.origin!r}, key='***')"


def _gpg(
    home: Path, args: Sequence[str], stdin: bytes, deadline: float, what: str, origin: str
) -> subprocess.CompletedProcess[bytes]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise SigningError(f"{origin}: signing timed out ({what})")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GNUPGHOME": str(home), "LC_ALL": "C", "LANGUAGE": "C"}
    cmd = ["gpg", "--batch", "--no-tty", "--homedir", str(home), "--pinentry-mode", "loopback", *args]
    try:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)  # fmt: skip
    except FileNotFoundError:
        raise SigningError("gpg is not installed (Debian package gnupg): cannot sign commits") from None
    try:
        out, err = proc.communicate(stdin, timeout=left)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise SigningError(f"{origin}: gpg did not finish {what} within {DEFAULT_TIMEOUT:g} s") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def _home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="imagebot-gpg-"))  # 0700, short path (the agent's socket lives here)
    try:
        yield home
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(home)},
                           capture_output=True, timeout=10, check=False)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def _secret_fingerprint(listing: bytes) -> str | None:
    """The first secret key's fingerprint in ``gpg --with-colons --list-secret-keys`` output."""
    in_sec = False
    for line in listing.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            in_sec = True
        elif fields[0] == "fpr" and in_sec and len(fields) > 9:
            return fields[9]
    return None


def sign(payload: bytes, key: OpenPGPKey, timeout: float = DEFAULT_TIMEOUT) -> str:
    """An ASCII-armored detached signature of ``payload`` by ``key``."""
    deadline = time.monotonic() + timeout
    origin = key.origin
    passphrase = key.passphrase.encode("utf-8") + b"\n"
    with _home() as home:
        imported = _gpg(home, ["--import"], key.armored.encode("utf-8"), deadline, "importing the key", origin)
        listing = _gpg(home, ["--with-colons", "--list-secret-keys"], b"", deadline, "listing the key", origin)
        fpr = _secret_fingerprint(listing.stdout)
        if imported.returncode or fpr is None:
            raise SigningError(f"{origin}: the key does not import as an OpenPGP secret key")
        data = home / "payload"
        fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        out = home / "payload.asc"
        args = ["--passphrase-fd", "0", "--local-user", fpr, "--armor", "--detach-sign", "--output", str(out), str(data)]
        signed = _gpg(home, args, passphrase, deadline, "signing", origin)
        if signed.returncode or not out.is_file():
            text = signed.stderr.decode("utf-8", "replace").lower()
            if "passphrase" in text or "bad passphrase" in text:
                raise SigningError(f"{origin}: wrong passphrase for the signing key")
            raise SigningError(f"{origin}: gpg could not sign (exit {signed.returncode})")
        return out.read_text()


def signed_commit(raw: bytes, signature: str) -> bytes:
    """The commit object ``raw`` (as ``git cat-file commit`` prints it) with ``signature`` in a ``gpgsig``
    header at the end of its headers, each continuation line indented by one space (git's format): removing
    the header gives back exactly the bytes that were signed."""
    head, sep, message = raw.partition(b"\n\n")
    lines = signature.rstrip("\n").split("\n")
    header = ("gpgsig " + "\n ".join(lines)).encode("utf-8")
    return head + b"\n" + header + (sep or b"\n\n") + message


__all__ = ["DEFAULT_TIMEOUT", "OpenPGPKey", "SigningError", "sign", "signed_commit"]
