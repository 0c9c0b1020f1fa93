#!/usr/bin/env bash
# Install the Debian packages the tests and the demo need (idempotent; does nothing when present).
#   docker-registry   the real registry (distribution 2.8) the registry tests start on loopback
#   openssh-server    sshd for the SSH git-remote tests (started on a loopback port, never as a service)
#   apache2-utils     htpasswd (bcrypt) for the registry's basic auth
#   git, curl, openssl, gnupg, debian-archive-keyring, ca-certificates: git remotes, TLS, signing, the apiserver build
#     and tests/tools/kubectl.sh (apt checks Debian sid's kubectl against that keyring; Debian 12 ships none)
# With --browser (make browser: the dashboard's browser tests, screenshots and bench) also:
#   chromium, chromium-driver   headless Chromium driven by Selenium through Debian's chromedriver
#   fonts-dejavu-core           a known font, so screenshots look the same on every machine
#   fonts-symbola               the symbols the pages use beside words (⏸ ⟳ ⎇ …) that DejaVu lacks (no empty boxes)
# Runs as root (CI) or through sudo; never asks (no stdin in CI). Exit: 0 ok, 1 apt failed, 2 usage.
set -euo pipefail
PKGS=(docker-registry openssh-server apache2-utils git curl openssl gnupg debian-archive-keyring ca-certificates)
case "${1:-}" in
  "") ;;
  --browser) PKGS=(chromium chromium-driver fonts-dejavu-core fonts-symbola) ;;
  *) echo "usage: $0 [--browser]" >&2; exit 2 ;;
esac
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update -qq </dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null </dev/null
