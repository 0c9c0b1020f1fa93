"""The cosign the signature tests run, as ``tests/tools/cosign.sh`` resolves it: ``$IMAGEBOT_COSIGN``, else
Debian sid's package fetched once into ``~/.cache/imagebot/cosign`` (Debian 12 has none; the tests need
cosign 3's offline signing flags)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("cosign.sh")
FETCH_TIMEOUT = 900.0  # the script's own lock wait is as long: a fetch runs at most once at a time


class CosignUnavailable(RuntimeError):
    """No cosign, and none could be fetched: the message says why."""


@functools.cache
def cosign() -> str:
    """The absolute path of the cosign to run. A fetch prints its progress on our stderr."""
    try:
        proc = subprocess.run([str(SCRIPT)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=FETCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CosignUnavailable(f"{SCRIPT} did not finish in {FETCH_TIMEOUT:.0f}s") from None
    path = proc.stdout.strip()
    if proc.returncode or not path:
        raise CosignUnavailable(f"{SCRIPT} exited {proc.returncode} (its message is above)")
    return path
