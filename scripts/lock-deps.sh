#!/usr/bin/env bash
# Regenerate the lock files in bootstrap/locks/ with `uv pip compile`: wheels only, for x86_64
# manylinux_2_28, one lock per (env, variant, Python). Which envs and variants exist, and
# which requirements file each is locked from, comes from bootstrap/catalog.py
# (`python3 -m bootstrap catalog --locks`), never from a list here:
#
#   an env without torch:  variant none (no torch, no CUDA wheels), hashed.
#   an env with torch:     the package index's build (cu126), hashed; the builds on PyTorch's
#                          own index (cu128, cpu): hashed, resolved with that index, if it
#                          answers; else unhashed, derived from the cu126 lock (no torch/
#                          torchaudio/torchvision/triton/nvidia-* pins; torch==, torchaudio==
#                          and torchvision== are resolved from the index named in the header
#                          at install time).
#
# Existing locks are passed to uv as preferences, so re-running changes only what must change;
# --upgrade ignores them. The header is written by bootstrap/lockheader.py. A full run ends by
# checking that every lock the catalog demands exists, and fails naming any that does not.
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: scripts/lock-deps.sh [--upgrade] [--no-torch-index] [ENV ...]

Regenerate bootstrap/locks/<env>-<variant>-cp<XY>.txt from bootstrap/requirements/<env>.in.
ENV: an env of bootstrap/catalog.py (python3 -m bootstrap catalog --json); default: all of
them (stack is the GPU stack that HANDLER_TYPE=custom adds with RUNPOD_SLIM_CUSTOM_GPU_STACK=1).

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
LOCK_DIR="$ROOT/bootstrap/locks"
HELPER="$ROOT/scripts/lock_deps.py"
PYTHON="${PYTHON:-python3}"
PLATFORM="${LOCK_PLATFORM:-x86_64-manylinux_2_28}"
TORCH_INDEX_BASE="${TORCH_INDEX_BASE:-https://download.pytorch.org/whl}"
PROBE_TIMEOUT="${LOCK_PROBE_TIMEOUT:-10}"
read -r -a PYTHONS <<<"${LOCK_PYTHONS:-3.10 3.11}"

# What the catalog demands: one "ENV VARIANT SOURCE REQUIREMENTS" line per lock set.
CATALOG="$(cd "$ROOT" && "$PYTHON" -m bootstrap catalog --locks)"
mapfile -t ALL_ENVS < <(awk '!seen[$1]++ { print $1 }' <<<"$CATALOG")
UPGRADE=0
TRY_TORCH_INDEX=1
ENVS=()

while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --upgrade) UPGRADE=1 ;;
        --no-torch-index) TRY_TORCH_INDEX=0 ;;
        -*) echo "lock-deps: unknown option: $1" >&2; usage; exit 2 ;;
        *)
            case " ${ALL_ENVS[*]} " in
                *" $1 "*) ENVS+=("$1") ;;
                *) echo "lock-deps: unknown env: $1 (the catalog has: ${ALL_ENVS[*]})" >&2; exit 2 ;;
            esac
            ;;
    esac
    shift
done
if ((${#ENVS[@]} == 0)); then
    ENVS=("${ALL_ENVS[@]}")
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

# compile ENV VARIANT PYTHON REQUIREMENTS [INDEX]: one hashed lock via uv pip compile.
compile() {
    local handler="$1" variant="$2" python="$3" requirements="$4" index="${5:-}"
    local tag="cp${python//./}"
    local lock="$LOCK_DIR/$handler-$variant-$tag.txt"
    local body="$WORK/$handler-$variant-$tag.txt"
    local args=(
        pip compile "$requirements"
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
    if [[ -f "${requirements%.in}.overrides" ]]; then
        args+=(--overrides "${requirements%.in}.overrides")
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

# derive ENV VARIANT PYTHON INDEX BASE: the unhashed lock, from the BASE variant's lock.
derive() {
    local handler="$1" variant="$2" python="$3" index="$4" base="$5"
    local tag="cp${python//./}"
    echo "lock-deps: $handler $variant Python $python (unhashed, torch from $index)" >&2
    "$PYTHON" "$HELPER" derive --handler "$handler" --variant "$variant" --python "$python" \
        --platform "$PLATFORM" --index "$index" \
        --base "$LOCK_DIR/$handler-$base-$tag.txt" \
        --out "$LOCK_DIR/$handler-$variant-$tag.txt"
}

# torch_index_answers URL: can this machine reach PyTorch's index?
torch_index_answers() {
    ((TRY_TORCH_INDEX)) || return 1
    "$PYTHON" "$HELPER" probe "$1/torch/" --timeout "$PROBE_TIMEOUT"
}

mkdir -p "$LOCK_DIR"
for env in "${ENVS[@]}"; do
    base=""  # the env's variant from the package index: what unhashed locks derive from
    while read -r name variant source requirements; do
        [[ "$name" == "$env" ]] || continue
        if [[ ! -f "$requirements" ]]; then
            echo "lock-deps: the catalog's env $env needs $requirements, which is missing" >&2
            exit 1
        fi
        case "$source" in
            index)
                base="$variant"
                for python in "${PYTHONS[@]}"; do
                    compile "$env" "$variant" "$python" "$requirements"
                done
                ;;
            torch)
                index="$TORCH_INDEX_BASE/$variant"
                if torch_index_answers "$index"; then
                    for python in "${PYTHONS[@]}"; do
                        compile "$env" "$variant" "$python" "$requirements" "$index"
                    done
                elif [[ -n "$base" ]]; then
                    echo "lock-deps: $index does not answer: $variant locks will be unhashed" >&2
                    for python in "${PYTHONS[@]}"; do
                        derive "$env" "$variant" "$python" "$index" "$base"
                    done
                else
                    echo "lock-deps: $env $variant: $index does not answer and no lock" \
                        "from the package index to derive from" >&2
                    exit 1
                fi
                ;;
            *)
                echo "lock-deps: the catalog gave $env $variant an unknown source: $source" >&2
                exit 1
                ;;
        esac
    done <<<"$CATALOG"
done
if [[ " ${LOCK_PYTHONS:-3.10 3.11} " == " 3.10 3.11 " ]]; then
    # Every lock the catalog demands must exist: a forgotten env fails here, loudly.
    (cd "$ROOT" && "$PYTHON" -m bootstrap catalog --check-locks --locks-dir "$LOCK_DIR")
fi
echo "lock-deps: done; locks in ${LOCK_DIR#"$ROOT"/}" >&2
