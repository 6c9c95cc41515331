#!/usr/bin/env bash
# Builds a stand-in base image for machines that cannot pull from an image registry (the
# test machines cannot pull ubuntu:22.04): Debian bookworm's minimal system from Debian's
# archive, by debootstrap, imported into the local Docker daemon. Bookworm has Python 3.11,
# for which the project has locks as it has for 3.10 (Ubuntu 22.04's).
#
# Like an official image, it holds no downloaded packages and no package lists. Nothing is
# done when the image exists already. debootstrap is installed from Debian's archive when it
# is missing (as root). A Docker daemon must answer: scripts/start-dockerd.sh.
#
# Usage: scripts/make-base-image.sh [NAME]   (default runpod-slim-test-base:bookworm)
#   DEBIAN_MIRROR  the archive to bootstrap from (default http://deb.debian.org/debian)
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: scripts/make-base-image.sh [NAME]
Imports Debian bookworm (debootstrap --variant=minbase) as the image NAME
(default runpod-slim-test-base:bookworm), unless it exists already.
  DEBIAN_MIRROR  the archive to bootstrap from (default http://deb.debian.org/debian)
USAGE
}

case "$#:${1:-}" in
  0:) name=runpod-slim-test-base:bookworm ;;
  1:-h | 1:--help)
    usage
    exit 0
    ;;
  1:-*)
    usage
    exit 2
    ;;
  1:*) name=$1 ;;
  *)
    usage
    exit 2
    ;;
esac

me=make-base-image.sh
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! docker info >/dev/null 2>&1; then
  echo "$me: no Docker daemon answers; start one first: scripts/start-dockerd.sh" >&2
  exit 1
fi
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "$me: $name exists already"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$me: debootstrap needs root; as root, run $0 $name" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "$me: installing Debian's debootstrap"
  apt_get=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
  "${apt_get[@]}" update
  "${apt_get[@]}" install -y --no-install-recommends debootstrap
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/runpod-slim-base.XXXXXX")
rootfs=$work/rootfs
cleanup() {
  # A debootstrap that failed half way can leave proc or sys mounted inside the tree: unmount
  # them, and never let rm cross into another filesystem.
  local mount
  for mount in "$rootfs/proc" "$rootfs/sys" "$rootfs/dev/pts"; do
    if mountpoint -q "$mount" 2>/dev/null; then
      umount -l "$mount" || true
    fi
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "$me: debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  echo "$me: debootstrap failed; the end of its log:" >&2
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
# What official images leave out too: the downloaded .debs and the package lists (an image
# build runs apt-get update first).
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

echo "$me: importing $name"
tar -C "$rootfs" --numeric-owner -c . | docker import -c 'CMD ["bash"]' - "$name" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$name")
echo "$me: $name is $((size / 1000000)) MB"
