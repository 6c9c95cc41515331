#!/usr/bin/env bash
# Builds the worker's image from runpod.Dockerfile.slim for linux/amd64 (RunPod's machines) and
# reports its size and what it adds to its base image.
#
#   ./build-runpod-slim.sh                                   runpod-slim:latest, the slim tier
#   ./build-runpod-slim.sh --tier baked --handler audio \
#       --gpu "NVIDIA H100 80GB HBM3:9.0:550.54.15"          the audio env baked in
#   ./build-runpod-slim.sh --tag registry.example/runpod-slim:0.1.0 --push
#   ./build-runpod-slim.sh --tier baked --handler storage --ca-cert proxy-ca.crt
#                                                            behind a TLS-intercepting proxy
#
# With docker buildx it builds with BuildKit; without it (Debian's docker.io has no buildx), with
# the classic builder, which ignores the Dockerfile's syntax line instead of pulling a frontend.
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: build-runpod-slim.sh [--tag NAME] [--base IMAGE] [--tier slim|baked] [--handler H]
                            [--gpu NAME:MAJOR.MINOR:DRIVER] [--ca-cert FILE] [--push]
                            [--network host]
  --tag NAME       the image's name (default runpod-slim:latest, or runpod-slim:baked-H)
  --base IMAGE     the base image (default ubuntu:22.04, the Dockerfile's BASE_IMAGE)
  --tier T         slim (default): the stack installs at first start, into the volume;
                   baked: the handler's stack is installed into the image at build time
  --handler H      baked tier: a handler of bootstrap/catalog.py (audio, tts, video,
                   storage: python3 -m bootstrap catalog --handlers); required with baked
  --gpu SPEC       baked tier: the GPU the workers will have (default none), which decides
                   the torch build and flash-attn
  --ca-cert FILE   baked tier: a PEM CA certificate the build trusts when it downloads from
                   the index (a TLS-intercepting proxy's); the image does not keep it
  --push           docker push the image after the build
  --network MODE   the build's network (host where the daemon has no bridge network)
USAGE
}

die_usage() {
  echo "build-runpod-slim.sh: $1" >&2
  usage
  exit 2
}

tag=
base=
tier=slim
handler=
gpu=
ca_cert=
push=false
network=
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tag | --base | --tier | --handler | --gpu | --network | --ca-cert)
      [ "$#" -ge 2 ] || die_usage "$1 needs a value"
      case "$1" in
        --tag) tag=$2 ;;
        --base) base=$2 ;;
        --tier) tier=$2 ;;
        --handler) handler=$2 ;;
        --gpu) gpu=$2 ;;
        --network) network=$2 ;;
        --ca-cert) ca_cert=$2 ;;
      esac
      shift 2
      ;;
    --push)
      push=true
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done

case "$tier" in
  slim)
    [ -z "$handler" ] || die_usage "--handler is for --tier baked (the slim tier serves all)"
    [ -z "$gpu" ] || die_usage "--gpu is for --tier baked"
    [ -z "$ca_cert" ] || die_usage "--ca-cert is for --tier baked (slim downloads nothing over TLS)"
    ;;
  baked)
    # The handlers are the catalog's (bootstrap/catalog.py), not a list kept here.
    handlers=$(cd "$(dirname "${BASH_SOURCE[0]}")" && python3 -m bootstrap catalog --handlers |
      paste -sd ' ')
    [ -n "$handler" ] || die_usage "--tier baked needs --handler, one of: $handlers"
    case " $handlers " in
      *" $handler "*) ;;
      *) die_usage "--handler '$handler' is not one of: $handlers" ;;
    esac
    ;;
  *) die_usage "--tier '$tier' is not slim or baked" ;;
esac
if [ -n "$ca_cert" ] && ! grep -q -- '-----BEGIN CERTIFICATE-----' "$ca_cert" 2>/dev/null; then
  die_usage "--ca-cert '$ca_cert' is not a readable PEM certificate file"
fi
[ -z "$ca_cert" ] || ca_cert=$(cd "$(dirname "$ca_cert")" && pwd)/$(basename "$ca_cert")
if [ -z "$tag" ]; then
  tag=runpod-slim:latest
  [ "$tier" = slim ] || tag=runpod-slim:baked-$handler
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
source_url=$(git remote get-url origin 2>/dev/null || true)
args=(
  -f runpod.Dockerfile.slim
  --target "$tier"
  --tag "$tag"
  --build-arg "VERSION=${version:-dev}"
  --build-arg "SOURCE=$source_url"
)
[ -z "$base" ] || args+=(--build-arg "BASE_IMAGE=$base")
[ -z "$network" ] || args+=(--network "$network")
if [ "$tier" = baked ]; then
  args+=(--build-arg "HANDLER=$handler" --build-arg "GPU=${gpu:-none}")
fi
if [ -n "$ca_cert" ]; then
  # Into the build context's build-ca/ for this build only (the Dockerfile's install stage reads
  # it there; the image keeps nothing of that stage but the env), and out again however it ends.
  # Named by its content: the same CA again finds the install stage in the builder's cache.
  staged_ca=build-ca/build-runpod-slim-$(sha256sum "$ca_cert" | cut -c1-16).crt
  trap 'rm -f "$staged_ca"' EXIT
  cp -- "$ca_cert" "$staged_ca"
fi

if docker buildx version >/dev/null 2>&1; then
  # --load: the image goes to the local daemon, to be measured, run and pushed from there.
  docker buildx build --platform linux/amd64 --load "${args[@]}" .
else
  # The classic builder runs the RUN steps on the daemon's own machine: refuse one that is not
  # linux/amd64 rather than build an image for another platform.
  arch=$(docker version -f '{{.Server.Os}}/{{.Server.Arch}}')
  if [ "$arch" != linux/amd64 ]; then
    echo "build-runpod-slim.sh: the daemon is $arch, no buildx to build for linux/amd64" >&2
    exit 1
  fi
  # --force-rm: a failed step's container goes too, as a successful one's does.
  DOCKER_BUILDKIT=0 docker build --platform linux/amd64 --force-rm "${args[@]}" .
fi

base_ref=${base:-ubuntu:22.04}
image_size=$(docker image inspect -f '{{.Size}}' "$tag")
# BuildKit may have pulled the base into its own store only: pull it into the daemon's to measure.
if ! base_size=$(docker image inspect -f '{{.Size}}' "$base_ref" 2>/dev/null); then
  docker pull -q "$base_ref" >/dev/null
  base_size=$(docker image inspect -f '{{.Size}}' "$base_ref")
fi
mb() { awk -v bytes="$1" 'BEGIN { printf "%.1f MB", bytes / 1e6 }'; }
echo "build-runpod-slim.sh: $tag ($tier) is $(mb "$image_size"); its base $base_ref is" \
  "$(mb "$base_size"); it adds $(mb "$((image_size - base_size))")"

if [ "$push" = true ]; then
  docker push "$tag"
fi
