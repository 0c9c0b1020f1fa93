# tests/tools/sid.sh - sourced by cosign.sh and kubectl.sh (not run): one program from Debian sid's package of the same
# name, fetched once into a cache.
#
#   sid_program PROGRAM CACHE VERSION-ARGS...
#
# prints the absolute path of PROGRAM in CACHE/current (the only line on stdout). When the cache has none (or REFRESH
# is set) the package is downloaded with a private apt configuration (the system's apt setup is untouched; apt checks
# the index's signature against the Debian archive keyring and the package's checksum against the index), extracted
# with `dpkg -x` into CACHE/<version>/, run once (`PROGRAM VERSION-ARGS...`: it must run on this machine), and
# CACHE/current pointed at it. Later runs reuse it at once (no network). Fetches take an exclusive flock on
# CACHE/.lock, so two runs at once never see or write a half-extracted tree.
#
# From the caller: die MESSAGE [CODE] (names the script; exits 1 by default), and optionally SID_NOTE (said before
# "fetching"). Env: MIRROR (default http://deb.debian.org/debian), SUITE (sid), KEYRING (debian-archive-keyring),
#      LOCK_TIMEOUT (seconds to wait for another fetch, default 900), REFRESH.

MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-sid}
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

sid_program() {
  local prog=$1 cache=$2
  shift 2
  local bin="usr/bin/$prog"
  if [ -z "${REFRESH:-}" ] && [ -e "$cache/current/.done" ] && [ -x "$cache/current/$bin" ]; then
    readlink -f "$cache/current/$bin"; return 0
  fi

  local tool
  for tool in apt-get dpkg-deb flock; do command -v "$tool" >/dev/null || die "needs $tool"; done
  mkdir -p "$cache"
  exec 9>"$cache/.lock"   # held until the script exits
  if ! flock -w "${LOCK_TIMEOUT:-900}" 9; then
    die "another fetch holds $cache/.lock for more than ${LOCK_TIMEOUT:-900}s"
  fi
  # The run that held the lock may have finished the job.
  if [ -z "${REFRESH:-}" ] && [ -e "$cache/current/.done" ] && [ -x "$cache/current/$bin" ]; then
    readlink -f "$cache/current/$bin"; return 0
  fi

  [ -r "$KEYRING" ] || die "no Debian archive keyring at $KEYRING (apt-get install debian-archive-keyring)"
  local work="$cache/work"
  local apt=(-o Dir::Etc::SourceList="$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
             -o Dir::State::Lists="$work/apt/lists" -o Dir::State::status="$work/apt/status"
             -o Dir::Cache="$work/apt/cache" -o Acquire::Languages=none -o APT::Sandbox::User=root)
  rm -rf "$work"
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/deb"
  echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" > "$work/apt/sources.list"
  : > "$work/apt/status"   # nothing installed: every candidate comes from the suite
  echo "$prog.sh: ${SID_NOTE:-}fetching Debian $SUITE's $prog package into $cache" >&2
  apt-get "${apt[@]}" -qq update || die "apt-get update of $MIRROR $SUITE failed"
  (cd "$work/deb" && apt-get "${apt[@]}" -qq download "$prog") \
    || die "apt-get download $prog from $MIRROR $SUITE failed (package renamed or removed?)"
  local deb ver out
  deb=$(ls "$work/deb/${prog}_"*.deb)
  ver=$(dpkg-deb -W --showformat='${Version}' "$deb")
  out="$cache/$ver"
  if [ ! -e "$out/.done" ]; then   # a finished tree is never replaced: a test may be running its program
    rm -rf "$out" "$out.tmp"
    dpkg -x "$deb" "$out.tmp" || die "dpkg -x $deb failed"
    "$out.tmp/$bin" "$@" >/dev/null 2>&1 \
      || die "Debian $SUITE's $prog $ver does not run here (needs a newer libc?): $("$out.tmp/$bin" "$@" 2>&1 | head -3)"
    touch "$out.tmp/.done"
    mv "$out.tmp" "$out"
  fi
  ln -sfn "$ver" "$cache/current.tmp"
  mv -T "$cache/current.tmp" "$cache/current"   # rename(2): readers see the old or the new link, never none
  rm -rf "$work"
  echo "$prog.sh: $prog $ver ready in $out" >&2
  readlink -f "$out/$bin"
}
