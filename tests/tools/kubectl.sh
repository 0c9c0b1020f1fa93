#!/usr/bin/env bash
# tests/tools/kubectl.sh - print the path of the kubectl the demo and the tests run (the only line on stdout).
#
#   1. $IMAGEBOT_KUBECTL when set: the path of an executable (exit 2 when it is not one), or the word
#      `fetch` for the cached Debian sid one below even when a kubectl is on PATH;
#   2. `kubectl` on PATH;
#   3. Debian sid's `kubectl` package (Debian 12 ships none), fetched once into CACHE by sid.sh (a private apt
#      configuration, checked against the Debian archive keyring; extracted into CACHE/<version>/, CACHE/current
#      pointing at it). Later runs reuse it at once (no network); REFRESH=1 asks sid again.
#
# CACHE: $IMAGEBOT_KUBECTL_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/imagebot/kubectl. Fetches take an
# exclusive flock on CACHE/.lock, so two runs at once never see or write a half-extracted tree (sid.sh).
# Env: MIRROR (default http://deb.debian.org/debian), SUITE (sid), KEYRING (debian-archive-keyring),
#      LOCK_TIMEOUT (seconds to wait for another fetch, default 900).
# Exit: 0 ok (path on stdout); 1 fetch failed (says why); 2 IMAGEBOT_KUBECTL is not an executable.
set -euo pipefail
export LC_ALL=C

die() { echo "kubectl.sh: $1" >&2; exit "${2:-1}"; }
CACHE=${IMAGEBOT_KUBECTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagebot/kubectl}
OVERRIDE=${IMAGEBOT_KUBECTL:-}

if [ -n "$OVERRIDE" ] && [ "$OVERRIDE" != fetch ]; then
  [ -f "$OVERRIDE" ] && [ -x "$OVERRIDE" ] || die "IMAGEBOT_KUBECTL=$OVERRIDE is not an executable file (unset it, or set it to 'fetch')" 2
  readlink -f "$OVERRIDE"; exit 0
fi
if [ -z "$OVERRIDE" ] && found=$(command -v kubectl); then
  echo "$found"; exit 0
fi

SID_NOTE=${OVERRIDE:+IMAGEBOT_KUBECTL=fetch: }
. "$(dirname "$(readlink -f "$0")")/sid.sh"
sid_program kubectl "$CACHE" version --client
