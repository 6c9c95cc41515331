#!/usr/bin/env bash
# Install the system packages the test suite needs, from Debian's archive.
#
#   ceph-mon, ceph-osd, radosgw (+ ceph-common): a throwaway one-node Ceph
#   cluster whose radosgw is the real S3 server of the tests
#   (tests/support/radosgw.py).
#   espeak-ng: speaks the script the audio handler's tests transcribe
#   (tests/integration/test_audio_handler.py).
#   moosefs-master, moosefs-chunkserver, moosefs-client: a throwaway MooseFS
#   cluster, the network volume of the tests and benchmarks
#   (tests/support/moosefs.py); iproute2 (ip) and util-linux (nsenter,
#   umount) for the network namespaces it runs in.
#
# Idempotent and quick when everything is there already: it asks dpkg first
# and only runs `apt-get update` and `apt-get install` for what is missing.
# Never prompts: apt runs non-interactively, and sudo (used only when not
# root) is given -n unless standard input is a terminal.
#
# Usage: scripts/install-test-deps.sh [--check]
#   --check   only report; exit 1 if something is missing
set -euo pipefail

# Recommends are not needed: the four ceph ones are the minimal set that runs a
# mon + memstore OSD + radosgw cluster (ceph-common has ceph, ceph-authtool
# and radosgw-admin; ceph-base, pulled in by ceph-mon, has monmaptool).
# MooseFS: libfuse3 comes with moosefs-client; fusermount is not needed (root
# mounts FUSE directly).
PACKAGES=(
    ceph-mon ceph-osd radosgw ceph-common espeak-ng
    moosefs-master moosefs-chunkserver moosefs-client iproute2 util-linux zstd libzstd1
)

usage() {
    echo "usage: $0 [--check]" >&2
    echo "  installs with apt-get, when missing: ${PACKAGES[*]}" >&2
}

check_only=false
case "$#:${1:-}" in
    0:) ;;
    1:--check) check_only=true ;;
    1:-h | 1:--help)
        usage
        exit 0
        ;;
    *)
        usage
        exit 2
        ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "$0: no dpkg/apt-get here; install these packages (or their equivalents)" \
        "by other means: ${PACKAGES[*]}" >&2
    exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)"
    if [[ "$status" != "installed" ]]; then
        missing+=("$package")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "test dependencies already installed: ${PACKAGES[*]}"
    exit 0
fi

if [[ "$check_only" == true ]]; then
    echo "missing test dependencies: ${missing[*]} (run $0 to install them)" >&2
    exit 1
fi

need_root() {
    echo "$0: $1; as root, run:" >&2
    echo "  apt-get update && apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
}

as_root=()
if [[ "$(id -u)" -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        need_root "not root, and no sudo"
    fi
    as_root=(sudo)
    if [[ ! -t 0 ]]; then
        # No terminal to type a password at: fail now instead of waiting.
        as_root+=(-n)
        if ! sudo -n true 2>/dev/null; then
            need_root "not root, and sudo wants a password but there is no terminal"
        fi
    fi
fi

apt_get=(
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q
    -o DPkg::Lock::Timeout=300
    -o Dpkg::Options::=--force-confdef
    -o Dpkg::Options::=--force-confold
)

echo "installing test dependencies: ${missing[*]}"
"${apt_get[@]}" update
"${apt_get[@]}" install -y --no-install-recommends "${missing[@]}"

for binary in ceph ceph-authtool ceph-mon ceph-osd monmaptool radosgw radosgw-admin \
    mfsmaster mfschunkserver mfsmount ip nsenter umount; do
    if ! command -v "$binary" >/dev/null 2>&1; then
        echo "$0: installed ${missing[*]} but $binary is still not on PATH" >&2
        exit 1
    fi
done
echo "test dependencies installed: ${PACKAGES[*]}"
