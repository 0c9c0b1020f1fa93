#!/usr/bin/env bash
# tests/cluster/build.sh - build the test Kubernetes API server (kube-apiserver-lite)
# and fetch etcd, from Debian sid packages, into a cache outside the repository.
#
#   tests/cluster/build.sh            # prints the directory holding bin/{kube-apiserver-lite,etcd}
#   tests/cluster/build.sh --src-hash # prints the source hash a finished build records (and exits)
#
# Layout (CACHE defaults to ${XDG_CACHE_HOME:-~/.cache}/imagebot/apiserver):
#   CACHE/work/        private apt config + lists, downloaded debs, extracted root, Go build cache
#   CACHE/<key>/       bin/kube-apiserver-lite, bin/etcd, versions.txt; key = hash(package versions + source)
#   CACHE/current      symlink to the last <key> built
#   CACHE/.lock        flock held by a build: two builds at once (a test run while a demo builds) wait
#                      for each other instead of overwriting each other's work/ and <key>.tmp/
# The system's apt setup is never touched. A later run finds a finished build of its very source by
# its src-hash (any <key>, not only current: worktrees on different branches share one cache without
# rebuilding each other's builds) at once, without the lock and without network; REFRESH=1 asks sid
# again and rebuilds if any package version moved.
# Env: MIRROR (default http://deb.debian.org/debian), SUITE (sid), KEYRING (debian-archive-keyring).
# Exit: 0 ok (directory on stdout, the only line), 1 build failure (names the packages and versions),
#       2 usage.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${IMAGEBOT_APISERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagebot/apiserver}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-sid}
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
NAME=kube-apiserver-lite
SRC="$HERE/src/$NAME"
WORK="$CACHE/work"
# API packages whose OpenAPI definitions the server publishes (keep in sync with core.go).
OPENAPI_PKGS="k8s.io/api/core/v1 k8s.io/api/apps/v1 k8s.io/api/autoscaling/v1
 k8s.io/api/batch/v1 k8s.io/api/networking/v1 k8s.io/api/rbac/v1 k8s.io/api/coordination/v1
 k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime
 k8s.io/apimachinery/pkg/util/intstr k8s.io/apimachinery/pkg/api/resource
 k8s.io/apimachinery/pkg/version"

T0=$(date +%s)
step() { echo "== $* (+$(( $(date +%s) - T0 ))s)" >&2; }
die() { echo "build.sh: $*" >&2; exit 1; }

SRC_HASH=$( (cd "$SRC" && cat ./*.go go.mod; cat "$HERE/packages.txt"; echo "$OPENAPI_PKGS") | sha256sum | cut -c1-16)
if [ "${1:-}" = --src-hash ]; then echo "$SRC_HASH"; exit 0; fi
[ $# -eq 0 ] || { echo "usage: $0 [--src-hash]" >&2; exit 2; }

# --- fast path: a finished build of this very source (finished builds are never modified: a build
# writes <key>.tmp and renames it, so reading one needs no lock). The newest such build wins.
cached() {
  local d best=""
  for d in "$CACHE"/*/; do
    d=${d%/}
    case "$d" in *.tmp) continue ;; esac
    [ -L "$d" ] && continue   # current: print the build itself, which a later build never moves
    [ -e "$d/.done" ] && [ "$(cat "$d/src-hash" 2>/dev/null)" = "$SRC_HASH" ] || continue
    if [ -z "$best" ] || [ "$d/.done" -nt "$best/.done" ]; then best=$d; fi
  done
  [ -n "$best" ] || return 1
  echo "using cached build $best ($(grep -E '^(golang-k8s-apiserver-dev|etcd-server) ' "$best/versions.txt" | tr '\n' ' '))" >&2
  echo "$best"
}
if [ -z "${REFRESH:-}" ] && cached; then exit 0; fi

# --- one build at a time per cache: wait for another build (it may be building this very source)
command -v flock >/dev/null || die "needs flock (util-linux)"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  echo "build.sh: another build holds $CACHE/.lock; waiting for it" >&2
  flock 9
fi
if [ -z "${REFRESH:-}" ] && cached; then exit 0; fi

for tool in apt-get apt-cache dpkg-deb sha256sum; do command -v "$tool" >/dev/null || die "needs $tool"; done
[ -r "$KEYRING" ] || die "no Debian archive keyring at $KEYRING (apt-get install debian-archive-keyring)"

APT=(-o Dir::Etc::SourceList="$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
     -o Dir::State::Lists="$WORK/apt/lists" -o Dir::State::status="$WORK/apt/status"
     -o Dir::Cache="$WORK/apt/cache" -o Acquire::Languages=none -o APT::Sandbox::User=root)

# --- 1. download (redone with REFRESH=1 or when packages.txt changed)
PKGS_HASH=$(sha256sum "$HERE/packages.txt" | cut -c1-16)
if [ -n "${REFRESH:-}" ] || [ "$(cat "$WORK/debs/.done" 2>/dev/null)" != "$PKGS_HASH" ]; then
  step "apt-get update ($SUITE, private config in $WORK/apt)"
  mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/debs"
  echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" > "$WORK/apt/sources.list"
  : > "$WORK/apt/status"   # nothing installed: every candidate comes from sid
  apt-get "${APT[@]}" -qq update || die "apt-get update of $MIRROR $SUITE failed"
  GOPKG=$(apt-cache "${APT[@]}" depends golang-go | sed -n 's/^ *Depends: \(golang-1\.[0-9]*-go\)$/\1/p' | head -1)
  [ -n "$GOPKG" ] || die "cannot resolve golang-go -> golang-1.NN-go in $SUITE"
  step "apt-get download $(grep -cv '^#' "$HERE/packages.txt") packages + $GOPKG ${GOPKG%-go}-src"
  rm -f "$WORK"/debs/*.deb "$WORK/debs/.done"
  # shellcheck disable=SC2046
  (cd "$WORK/debs" && apt-get "${APT[@]}" -qq download $(grep -v '^#' "$HERE/packages.txt") "$GOPKG" "${GOPKG%-go}-src") \
    || die "apt-get download failed: a package in tests/cluster/packages.txt is missing from $SUITE (renamed or removed?)"
  for f in "$WORK"/debs/*.deb; do dpkg-deb -W --showformat='${Package} ${Version}\n' "$f"; done | sort > "$WORK/debs/versions.txt"
  echo "$PKGS_HASH" > "$WORK/debs/.done"
  echo "downloaded $(du -sh "$WORK/debs" | cut -f1) in $(ls "$WORK"/debs/*.deb | wc -l) debs" >&2
fi
ver() { awk -v p="$1" '$1==p {print $2}' "$WORK/debs/versions.txt"; }

KEY=$( (cat "$WORK/debs/versions.txt"; echo "$SRC_HASH") | sha256sum | cut -c1-16)
OUT="$CACHE/$KEY"
if [ -e "$OUT/.done" ]; then
  ln -sfn "$KEY" "$CACHE/current"
  echo "package versions unchanged: using $OUT" >&2
  echo "$OUT"; exit 0
fi

# The k8s.io libraries must come from one upstream release (0.MINOR.x).
minors=$(for p in api apimachinery apiserver client-go component-base apiextensions-apiserver kms; do
  echo "golang-k8s-$p-dev $(ver golang-k8s-$p-dev)"; done)
if [ "$(echo "$minors" | awk '{v=$2; sub(/^[0-9]*:/,"",v); split(v,a,"."); print a[1]"."a[2]}' | sort -u | wc -l)" -ne 1 ]; then
  echo "WARNING: the golang-k8s-*-dev packages in $SUITE are at different releases (a Kubernetes transition?):" >&2
  echo "$minors" | sed 's/^/  /' >&2
fi

# --- 2. extract (redone when the debs changed)
if [ ! -e "$WORK/root/.done" ] || [ "$WORK/debs/.done" -nt "$WORK/root/.done" ]; then
  step "dpkg -x into $WORK/root"
  rm -rf "$WORK/root"; mkdir -p "$WORK/root"
  for f in "$WORK"/debs/*.deb; do dpkg -x "$f" "$WORK/root"; done
  touch "$WORK/root/.done"
fi

# --- 3. Go in GOPATH mode over the Debian gocode tree, offline.
GOROOT=$(ls -d "$WORK"/root/usr/lib/go-1.* | sort -V | tail -1)
export GOROOT PATH="$GOROOT/bin:$PATH" GO111MODULE=off GOFLAGS= GOPROXY=off GOENV=off \
  GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$WORK/gocache" \
  GOPATH="$WORK/gopath:$WORK/root/usr/share/gocode"
PKGDIR="$WORK/gopath/src/$NAME"
mkdir -p "$PKGDIR/openapi"
for f in "$SRC"/*.go "$SRC/go.mod"; do cmp -s "$f" "$PKGDIR/$(basename "$f")" || cp "$f" "$PKGDIR/"; done
# a file another branch's source has and this one lacks must not be compiled in
for f in "$PKGDIR"/*.go; do [ -e "$SRC/$(basename "$f")" ] || rm -f "$f"; done

broke() {
  echo "build.sh: $1 failed with these Debian $SUITE packages:" >&2
  echo "$minors" | sed 's/^/  /' >&2
  echo "  $(grep -E '^(kube-openapi|golang-1\.[0-9]+-go|golang-k8s-sigs-structured-merge-diff-v6-dev|golang-k8s-kube-openapi-dev) ' "$WORK/debs/versions.txt" | tr '\n' ' ')" >&2
  echo "  (all versions: $WORK/debs/versions.txt). 'cannot find package X' means a new dependency: add the" >&2
  echo "  Debian package shipping /usr/share/gocode/src/X to tests/cluster/packages.txt." >&2
  exit 1
}

# --- 4. openapi-gen
GEN="$PKGDIR/openapi/zz_generated.openapi.go"
if [ ! -e "$GEN" ] || [ "$WORK/root/.done" -nt "$GEN" ] || [ "$(cat "$PKGDIR/openapi/.pkgs" 2>/dev/null)" != "$OPENAPI_PKGS" ]; then
  step "openapi-gen"
  echo "// Code generated by build.sh; DO NOT EDIT." > "$WORK/hdr.txt"
  # shellcheck disable=SC2086
  (cd "$WORK/gopath/src" && "$WORK/root/usr/bin/openapi-gen" --go-header-file "$WORK/hdr.txt" \
     --output-dir "$PKGDIR/openapi" --output-pkg "$NAME/openapi" --output-file zz_generated.openapi.go \
     --report-filename /dev/null $OPENAPI_PKGS) || broke "openapi-gen (kube-openapi $(ver kube-openapi))"
  echo "$OPENAPI_PKGS" > "$PKGDIR/openapi/.pkgs"
fi

# --- 5. go build
K8SVER=$(ver golang-k8s-apiserver-dev | sed 's/^[0-9]*://; s/-.*//; s/^0\./1./')   # 0.36.4 -> 1.36.4
step "go build ($("$GOROOT/bin/go" version | cut -d' ' -f3), k8s libs v$K8SVER; a cold build takes ~3 min on 2 cores)"
rm -rf "$OUT.tmp"   # a crashed build's leftovers (the lock says no build is running)
mkdir -p "$OUT.tmp/bin"
V=k8s.io/component-base/version
go build -trimpath -ldflags "-s -w -X $V.gitVersion=v$K8SVER -X $V.gitMajor=${K8SVER%%.*} \
  -X $V.gitMinor=$(echo "$K8SVER" | cut -d. -f2) -X $V.gitTreeState=clean" -o "$OUT.tmp/bin/$NAME" "$NAME" \
  || broke "go build"
cp "$WORK/root/usr/bin/etcd" "$OUT.tmp/bin/etcd"
cp "$WORK/debs/versions.txt" "$OUT.tmp/versions.txt"
echo "$SRC_HASH" > "$OUT.tmp/src-hash"
touch "$OUT.tmp/.done"
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
ln -sfn "$KEY" "$CACHE/current"
step "done"
echo "versions: $(for p in golang-k8s-apiserver-dev golang-k8s-apiextensions-apiserver-dev golang-k8s-api-dev etcd-server kube-openapi; do printf '%s=%s ' "$p" "$(ver "$p")"; done)" >&2
echo "          $(grep -o '^golang-1\.[0-9]*-go [^ ]*' "$WORK/debs/versions.txt")  (all: $OUT/versions.txt)" >&2
echo "$OUT"
