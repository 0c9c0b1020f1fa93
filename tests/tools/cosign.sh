#!/usr/bin/env bash
# tests/tools/cosign.sh - print the path of the cosign the signature tests run (the only line on stdout).
#
#   1. $IMAGEBOT_COSIGN when set: the path of an executable (exit 2 when it is not one);
#   2. Debian sid's `cosign` package (Debian 12 ships none; the tests need cosign 3's offline flags), fetched once
#      into CACHE by sid.sh (a private apt configuration, checked against the Debian archive keyring; extracted into
#      CACHE/<version>/, CACHE/current pointing at it). Later runs reuse it at once (no network); REFRESH=1 asks sid again.
#
# A cosign on PATH is not used: its version (and so its flags and default layout) would be anyone's.
# CACHE: $IMAGEBOT_COSIGN_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/imagebot/cosign. Fetches take an
# exclusive flock on CACHE/.lock, so two runs at once never see or write a half-extracted tree (sid.sh).
# Env: MIRROR (default http://deb.debian.org/debian), SUITE (sid), KEYRING (debian-archive-keyring),
#      LOCK_TIMEOUT (seconds to wait for another fetch, default 900).
# Exit: 0 ok (path on stdout); 1 fetch failed (says why); 2 IMAGEBOT_COSIGN is not an executable.
set -euo pipefail
export LC_ALL=C

die() { echo "cosign.sh: $1" >&2; exit "${2:-1}"; }
CACHE=${IMAGEBOT_COSIGN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagebot/cosign}
OVERRIDE=${IMAGEBOT_COSIGN:-}

if [ -n "$OVERRIDE" ]; then
  [ -f "$OVERRIDE" ] && [ -x "$OVERRIDE" ] || die "IMAGEBOT_COSIGN=$OVERRIDE is not an executable file (unset it to fetch sid's)" 2
  readlink -f "$OVERRIDE"; exit 0
fi

. "$(dirname "$(readlink -f "$0")")/sid.sh"
sid_program cosign "$CACHE" version
