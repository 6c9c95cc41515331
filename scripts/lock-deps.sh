#!/usr/bin/env bash
# Regenerate the lock files in bootstrap/locks/ from bootstrap/requirements/<handler>.in with
# `uv pip compile`: wheels only, for x86_64 manylinux_2_28, one lock per (handler, variant, Python).
#
#   storage, video:  variant none (no torch, no CUDA wheels), hashed.
#   audio, tts,
#   stack:           (stack: the GPU stack a custom handler adds with RUNPOD_SLIM_CUSTOM_GPU_STACK)
#                    variant cu126, hashed (torch 2.7.0 from the package index is the cu126 build);
#                    variants cu128 and cpu: hashed, resolved with PyTorch's index for the torch
#                    stack, if that index answers; else unhashed, derived from the cu126 lock
#                    (no torch/torchaudio/torchvision/triton/nvidia-* pins; torch==,
#                    torchaudio== and torchvision== are resolved from the index named in the
#                    header at install time).
#
# Existing locks are passed to uv as preferences, so re-running changes only what must change;
# --upgrade ignores them. The header format is documented in scripts/lock_deps.py.
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: scripts/lock-deps.sh [--upgrade] [--no-torch-index] [HANDLER ...]

Regenerate bootstrap/locks/<handler>-<variant>-cp<XY>.txt from bootstrap/requirements/<handler>.in.
HANDLER: audio, tts, video, storage, stack (default: all five; stack is the GPU stack
that HANDLER_TYPE=custom adds with RUNPOD_SLIM_CUSTOM_GPU_STACK=1).

  --upgrade         ignore the versions pinned in the existing locks (uv --upgrade)
  --no-torch-index  do not try PyTorch's indexes; write unhashed cu128/cpu locks
  -h, --help        this text

Environment:
  UV                  uv binary (default: .venv/bin/uv, else uv on PATH)
  PYTHON              Python 3.10+ that runs scripts/lock_deps.py (default: python3)
  LOCK_PYTHONS        target Python versions (default: "3.10 3.11")
  LOCK_PLATFORM       uv --python-platform (default: x86_64-manylinux_2_28)
  TORCH_INDEX_BASE    PyTorch's indexes (default: https://download.pytorch.org/whl)
  LOCK_PROBE_TIMEOUT  seconds to wait for PyTorch's index (default: 10)
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ_DIR="$ROOT/bootstrap/requirements"
LOCK_DIR="$ROOT/bootstrap/locks"
HELPER="$ROOT/scripts/lock_deps.py"
PYTHON="${PYTHON:-python3}"
PLATFORM="${LOCK_PLATFORM:-x86_64-manylinux_2_28}"
TORCH_INDEX_BASE="${TORCH_INDEX_BASE:-https://download.pytorch.org/whl}"
PROBE_TIMEOUT="${LOCK_PROBE_TIMEOUT:-10}"
read -r -a PYTHONS <<<"${LOCK_PYTHONS:-3.10 3.11}"

ALL_HANDLERS=(audio tts video storage stack)
UPGRADE=0
TRY_TORCH_INDEX=1
HANDLERS=()

while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --upgrade) UPGRADE=1 ;;
        --no-torch-index) TRY_TORCH_INDEX=0 ;;
        -*) echo "lock-deps: unknown option: $1" >&2; usage; exit 2 ;;
        *)
            case " ${ALL_HANDLERS[*]} " in
                *" $1 "*) HANDLERS+=("$1") ;;
                *) echo "lock-deps: unknown handler: $1" >&2; usage; exit 2 ;;
            esac
            ;;
    esac
    shift
done
if ((${#HANDLERS[@]} == 0)); then
    HANDLERS=("${ALL_HANDLERS[@]}")
fi

if [[ -n "${UV:-}" ]]; then
    :
elif [[ -x "$ROOT/.venv/bin/uv" ]]; then
    UV="$ROOT/.venv/bin/uv"
elif command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
else
    echo "lock-deps: uv not found (set UV, or pip install -r requirements-dev.txt)" >&2
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# compile HANDLER VARIANT PYTHON [INDEX]: one hashed lock via uv pip compile.
compile() {
    local handler="$1" variant="$2" python="$3" index="${4:-}"
    local tag="cp${python//./}"
    local lock="$LOCK_DIR/$handler-$variant-$tag.txt"
    local body="$WORK/$handler-$variant-$tag.txt"
    local args=(
        pip compile "$REQ_DIR/$handler.in"
        --output-file "$body"
        --no-config
        --generate-hashes
        --no-header
        --no-annotate
        --python-version "$python"
        --python-platform "$PLATFORM"
        --only-binary :all:
        --quiet
    )
    if [[ -f "$REQ_DIR/$handler.overrides" ]]; then
        args+=(--overrides "$REQ_DIR/$handler.overrides")
    fi
    if [[ -n "$index" ]]; then
        # PyTorch's index first, the package index as default, best version across both: as
        # the bootstrap installs. torch==2.7.0 then resolves to 2.7.0+<variant> (a local
        # version sorts above the plain one), with that build's triton and nvidia-* pins.
        args+=(--index "$index" --index-strategy unsafe-best-match)
    fi
    if ((UPGRADE)); then
        args+=(--upgrade)
    elif [[ -f "$lock" ]]; then
        # uv reads an existing output file's pins as preferences.
        cp "$lock" "$body"
    fi
    echo "lock-deps: $handler $variant Python $python" >&2
    "$UV" "${args[@]}"
    local finish=(
        finish --handler "$handler" --variant "$variant" --python "$python"
        --platform "$PLATFORM" --hashed true --body "$body" --out "$lock"
    )
    if [[ -n "$index" ]]; then
        finish+=(--index "$index")
    fi
    "$PYTHON" "$HELPER" "${finish[@]}"
}

# derive HANDLER VARIANT PYTHON INDEX: the unhashed lock, from the cu126 lock.
derive() {
    local handler="$1" variant="$2" python="$3" index="$4"
    local tag="cp${python//./}"
    echo "lock-deps: $handler $variant Python $python (unhashed, torch from $index)" >&2
    "$PYTHON" "$HELPER" derive --handler "$handler" --variant "$variant" --python "$python" \
        --platform "$PLATFORM" --index "$index" \
        --base "$LOCK_DIR/$handler-cu126-$tag.txt" \
        --out "$LOCK_DIR/$handler-$variant-$tag.txt"
}

# torch_index_answers URL: can this machine reach PyTorch's index?
torch_index_answers() {
    ((TRY_TORCH_INDEX)) || return 1
    "$PYTHON" "$HELPER" probe "$1/torch/" --timeout "$PROBE_TIMEOUT"
}

mkdir -p "$LOCK_DIR"
for handler in "${HANDLERS[@]}"; do
    if [[ ! -f "$REQ_DIR/$handler.in" ]]; then
        echo "lock-deps: missing $REQ_DIR/$handler.in" >&2
        exit 1
    fi
    case "$handler" in
        storage | video)
            for python in "${PYTHONS[@]}"; do
                compile "$handler" none "$python"
            done
            ;;
        audio | tts | stack)
            for python in "${PYTHONS[@]}"; do
                compile "$handler" cu126 "$python"
            done
            for variant in cu128 cpu; do
                index="$TORCH_INDEX_BASE/$variant"
                if torch_index_answers "$index"; then
                    for python in "${PYTHONS[@]}"; do
                        compile "$handler" "$variant" "$python" "$index"
                    done
                else
                    echo "lock-deps: $index does not answer: $variant locks will be unhashed" >&2
                    for python in "${PYTHONS[@]}"; do
                        derive "$handler" "$variant" "$python" "$index"
                    done
                fi
            done
            ;;
    esac
done
echo "lock-deps: done; locks in ${LOCK_DIR#"$ROOT"/}" >&2
