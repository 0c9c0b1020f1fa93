#!/usr/bin/env bash
# tests/tools/cosign.sh - print the path of the cosign the signature tests run (the only line on stdout).
#
#   1. $IMAGEBOT_COSIGN when set: the path of an executable (exit 2 when it is not one);
#   2. Debian sid's `cosign` package (Debian 12 ships none; the tests need cosign 3's offline flags):
#      downloaded with a private apt configuration (the system's apt setup is untouched; apt checks it
#      against the Debian archive keyring), extracted with `dpkg -x` into CACHE/<version>/, CACHE/current
#      pointing at it. Later runs reuse it at once (no network); REFRESH=1 asks sid again.
#
# A cosign on PATH is not used: its version (and so its flags and default layout) would be anyone's.
# CACHE: $IMAGEBOT_COSIGN_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/imagebot/cosign. Fetches take an
# exclusive flock on CACHE/.lock, so two runs at once never see or write a half-extracted tree.
# Env: MIRROR (default http://deb.debian.org/debian), SUITE (sid), KEYRING (debian-archive-keyring),
#      LOCK_TIMEOUT (seconds to wait for another fetch, default 900).
# Exit: 0 ok (path on stdout); 1 fetch failed (says why); 2 IMAGEBOT_COSIGN is not an executable.
set -euo pipefail
export LC_ALL=C

die() { echo "cosign.sh: $1" >&2; exit "${2:-1}"; }
CACHE=${IMAGEBOT_COSIGN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagebot/cosign}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-sid}
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
OVERRIDE=${IMAGEBOT_COSIGN:-}

if [ -n "$OVERRIDE" ]; then
  [ -f "$OVERRIDE" ] && [ -x "$OVERRIDE" ] || die "IMAGEBOT_COSIGN=$OVERRIDE is not an executable file (unset it to fetch sid's)" 2
  readlink -f "$OVERRIDE"; exit 0
fi

cached() { [ -e "$CACHE/current/.done" ] && [ -x "$CACHE/current/usr/bin/cosign" ]; }
if [ -z "${REFRESH:-}" ] && cached; then
  readlink -f "$CACHE/current/usr/bin/cosign"; exit 0
fi

for tool in apt-get dpkg-deb flock; do command -v "$tool" >/dev/null || die "needs $tool"; done
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -w "${LOCK_TIMEOUT:-900}" 9; then
  die "another fetch holds $CACHE/.lock for more than ${LOCK_TIMEOUT:-900}s"
fi
# The run that held the lock may have finished the job.
if [ -z "${REFRESH:-}" ] && cached; then
  readlink -f "$CACHE/current/usr/bin/cosign"; exit 0
fi

[ -r "$KEYRING" ] || die "no Debian archive keyring at $KEYRING (apt-get install debian-archive-keyring)"
WORK="$CACHE/work"
APT=(-o Dir::Etc::SourceList="$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
     -o Dir::State::Lists="$WORK/apt/lists" -o Dir::State::status="$WORK/apt/status"
     -o Dir::Cache="$WORK/apt/cache" -o Acquire::Languages=none -o APT::Sandbox::User=root)
rm -rf "$WORK"
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/deb"
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" > "$WORK/apt/sources.list"
: > "$WORK/apt/status"
echo "cosign.sh: fetching Debian $SUITE's cosign package into $CACHE" >&2
apt-get "${APT[@]}" -qq update || die "apt-get update of $MIRROR $SUITE failed"
(cd "$WORK/deb" && apt-get "${APT[@]}" -qq download cosign) \
  || die "apt-get download cosign from $MIRROR $SUITE failed (package renamed or removed?)"
DEB=$(ls "$WORK"/deb/cosign_*.deb)
VER=$(dpkg-deb -W --showformat='${Version}' "$DEB")
OUT="$CACHE/$VER"
if [ ! -e "$OUT/.done" ]; then   # a finished tree is never replaced: a test may be running its cosign
  rm -rf "$OUT" "$OUT.tmp"
  dpkg -x "$DEB" "$OUT.tmp" || die "dpkg -x $DEB failed"
  "$OUT.tmp/usr/bin/cosign" version >/dev/null 2>&1 \
    || die "Debian $SUITE's cosign $VER does not run here: $("$OUT.tmp/usr/bin/cosign" version 2>&1 | head -3)"
  touch "$OUT.tmp/.done"
  mv "$OUT.tmp" "$OUT"
fi
ln -sfn "$VER" "$CACHE/current.tmp"
mv -T "$CACHE/current.tmp" "$CACHE/current"   # rename(2): readers see the old or the new link, never none
rm -rf "$WORK"
echo "cosign.sh: cosign $VER ready in $OUT" >&2
readlink -f "$OUT/usr/bin/cosign"
