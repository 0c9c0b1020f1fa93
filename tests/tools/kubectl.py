"""The kubectl the demo and the tests run, as ``tests/tools/kubectl.sh`` resolves it: ``$IMAGEBOT_KUBECTL``,
else ``kubectl`` on PATH, else Debian sid's package fetched once into ``~/.cache/imagebot/kubectl``
(Debian 12 has no kubectl package)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("kubectl.sh")
FETCH_TIMEOUT = 900.0  # the script's own lock wait is as long: a fetch runs at most once at a time


class KubectlUnavailable(RuntimeError):
    """No kubectl, and none could be fetched: the message says why."""


@functools.cache
def kubectl() -> str:
    """The absolute path of the kubectl to run. A fetch prints its progress on our stderr."""
    try:
        proc = subprocess.run([str(SCRIPT)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=FETCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise KubectlUnavailable(f"{SCRIPT} did not finish in {FETCH_TIMEOUT:.0f}s") from None
    path = proc.stdout.strip()
    if proc.returncode or not path:
        raise KubectlUnavailable(f"{SCRIPT} exited {proc.returncode} (its message is above)")
    return path


def put_on_path() -> str:
    """Make ``kubectl`` on PATH (for this process and its children) the resolved one; return its path.

    Tests and the code under test (``kubectl kustomize``) call plain ``kubectl``: on a machine without
    one, the fetched kubectl's directory goes first on PATH."""
    path = kubectl()
    if shutil.which("kubectl") == path:
        return path
    directory = Path(path).parent
    if Path(path).name != "kubectl":  # IMAGEBOT_KUBECTL may name it otherwise: PATH lookups need "kubectl"
        directory = Path(tempfile.mkdtemp(prefix="imagebot-kubectl-"))
        (directory / "kubectl").symlink_to(path)
    os.environ["PATH"] = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
    return path
