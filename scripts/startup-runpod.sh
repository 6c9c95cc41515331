#!/usr/bin/env bash
# The container's entrypoint. Sets the defaults a RunPod worker needs, then hands over to
# handler.py, whose main() runs the bootstrap (detect, plan, install or find the env in the
# cache on the volume, activate) before it imports any handler, and then serves jobs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

export HANDLER_TYPE="${HANDLER_TYPE:-storage}"
# Logs reach RunPod's console as they are written, not when a buffer fills.
export PYTHONUNBUFFERED=1
# Model weights downloaded by handlers go to the volume too, when one is attached.
if [ -d "${RUNPOD_SLIM_VOLUME:-/runpod-volume}" ]; then
  export HF_HOME="${HF_HOME:-${RUNPOD_SLIM_VOLUME:-/runpod-volume}/.runpod-slim/models/huggingface}"
fi

exec "${PYTHON:-python3}" handler.py "$@"
