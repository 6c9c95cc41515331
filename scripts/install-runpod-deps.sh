#!/usr/bin/env bash
# Installs the stack a handler needs into the cache (by hand, or in an image build for the
# baked tier) and prints the env's path. A thin face of `python3 -m bootstrap install`:
# the same plan, locks and cache as a worker's first start.
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: scripts/install-runpod-deps.sh [--handler audio|tts|video|storage] [--cache-dir DIR]
                                      [--gpu auto|none|"NAME:MAJOR.MINOR:DRIVER"] [--json]
Defaults come from HANDLER_TYPE, RUNPOD_SLIM_CACHE and RUNPOD_SLIM_GPU (see RUNPOD-SLIM.md).
USAGE
}

args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --handler | --cache-dir | --gpu)
      if [ "$#" -lt 2 ]; then
        usage
        exit 2
      fi
      args+=("$1" "$2")
      shift 2
      ;;
    --json) args+=("$1"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install-runpod-deps.sh: unknown argument '$1'" >&2; usage; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
exec "${PYTHON:-python3}" -m bootstrap install "${args[@]}"
