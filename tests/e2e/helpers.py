"""What the end-to-end tests of the demo and its tools share: a PATH without kubectl (a fresh Debian 12)
and a look at every process for leftovers."""

from __future__ import annotations

import os
from pathlib import Path


def path_without_kubectl(shadow: Path) -> str:
    """A PATH with every command of the current one except ``kubectl``: one directory of symlinks, since
    Debian's merged /usr makes /bin and /usr/bin the same directory and both hold kubectl when installed."""
    shadow.mkdir(parents=True, exist_ok=True)
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            target = shadow / entry.name
            if entry.name != "kubectl" and not target.exists() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    return str(shadow)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (every demo server names its work folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmd:
            args = cmd.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {args}")
    return found
