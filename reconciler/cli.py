"""Command line of the reconciler (its commands arrive with the reconciler issue)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reconciler import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconciler", description="Keep a cluster equal to Git: render, apply, prune, heal.")
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
