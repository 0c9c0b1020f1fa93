"""Serve the bare repositories under ROOT over smart HTTP (``git http-backend``, basic auth as in
tests/fixtures/git.py) as a process of its own, until SIGTERM or SIGINT — so a config repository
outlives the program that created it (``make demo DEMO_ARGS=--keep``).

    python -m tests.tools.git_http ROOT PORT_FILE

PORT_FILE receives the loopback port once the server listens (written whole, by rename).
Exit: 0 stopped by a signal; 2 usage (ROOT is not a directory).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from tests.fixtures.git import GitHttp


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[0]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    root, port_file = Path(argv[0]), Path(argv[1])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    server = GitHttp(root)
    try:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(f"{server.server.port}\n")
        os.replace(tmp, port_file)
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
