#!/bin/sh
# install-deps.sh - installs the Debian 12 packages that building, running
# and testing Yingyun need. Idempotent: does nothing when all are present;
# otherwise runs apt-get update first. Works as root or through sudo.
set -eu

PKGS="build-essential meson ninja-build pkg-config python3
libmicrohttpd-dev libjansson-dev libsqlite3-dev zlib1g-dev libdeflate-dev libisal-dev
libjpeg62-turbo-dev libopenjp2-7-dev libcharls-dev libjxl-dev libpng-dev
libgdcm-dev libcurl4-openssl-dev libwebp-dev python3-pil libopenjph-dev
libopenjp2-tools libjxl-tools valgrind
python3-pydicom python3-numpy dcmtk libgdcm-tools sqlite3 curl
chromium qemu-system-x86 busybox-static xfsprogs e2fsprogs"

if [ "${YY_EXTRA_PKGS:-}" ]; then PKGS="$PKGS $YY_EXTRA_PKGS"; fi
# Node.js and npm: any installation will do (some images ship NodeSource's
# nodejs, which bundles npm and conflicts with Debian's npm package)
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-deps: need root or sudo to install:$missing" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
