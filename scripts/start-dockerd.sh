#!/usr/bin/env bash
# Makes sure a Docker daemon answers, for the image build and the container tests.
#
# Idempotent: when `docker info` already answers (a daemon started by systemd, by an earlier
# run of this script, or by anyone else), it does nothing. Otherwise it installs Debian's
# docker.io when dockerd is missing (as root, non-interactively), starts dockerd in the
# background with its log in a file, and polls `docker info` until the daemon answers or the
# deadline passes.
#
# Where dockerd cannot set up its iptables NAT rules (a sandbox without the nat table), it is
# started again with --iptables=false --bridge=none: containers then have no bridge network,
# so builds and runs need --network host.
#
# Usage: scripts/start-dockerd.sh
#   DOCKERD_LOG      the daemon's log (default /var/log/runpod-slim-dockerd.log)
#   DOCKERD_TIMEOUT  seconds to wait for the daemon to answer (default 60)
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: scripts/start-dockerd.sh
Starts dockerd in the background unless a Docker daemon already answers `docker info`;
installs Debian's docker.io first when dockerd is missing (needs root).
  DOCKERD_LOG      the daemon's log (default /var/log/runpod-slim-dockerd.log)
  DOCKERD_TIMEOUT  seconds to wait for it to answer (default 60)
USAGE
}

case "$#:${1:-}" in
  0:) ;;
  1:-h | 1:--help)
    usage
    exit 0
    ;;
  *)
    usage
    exit 2
    ;;
esac

log_file=${DOCKERD_LOG:-/var/log/runpod-slim-dockerd.log}
timeout_s=${DOCKERD_TIMEOUT:-60}
me=start-dockerd.sh

answers() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# Polls until the daemon answers (0), its process exits (1) or the deadline passes (2).
wait_for_daemon() {
  local pid=$1 deadline=$((SECONDS + timeout_s))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if answers; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.2
  done
  return 2
}

if answers; then
  echo "$me: a Docker daemon already answers"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "$me: no Docker daemon answers, and starting one needs root; as root, run $0" >&2
  exit 1
fi

# The docker client may come from elsewhere (a newer static binary on PATH); the daemon and
# its runtime (containerd, runc, iptables, tini) come with Debian's docker.io. Recommends are
# not needed to build and run images.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  echo "$me: installing Debian's docker.io"
  apt_get=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
  "${apt_get[@]}" update
  "${apt_get[@]}" install -y --no-install-recommends docker.io
fi

# A dockerd that runs already (still starting, or started by systemd when docker.io was just
# installed) is waited for, never replaced: a second one would fight it for the same state.
running=$(cat /var/run/docker.pid 2>/dev/null || true)
if [ -n "$running" ] && kill -0 "$running" 2>/dev/null; then
  echo "$me: dockerd runs already (pid $running); waiting for it to answer"
  if wait_for_daemon "$running"; then
    echo "$me: dockerd answers (pid $running)"
    exit 0
  fi
  echo "$me: dockerd (pid $running) runs but 'docker info' fails:" >&2
  docker info >&2 || true
  exit 1
fi

start_daemon() {
  echo "$me: starting dockerd${*:+ $*} (log: $log_file)"
  mkdir -p "$(dirname "$log_file")"
  # Its own session, and no descriptor of ours: it outlives this script and the test run,
  # and a caller reading our output does not wait on the daemon's.
  setsid dockerd "$@" </dev/null >>"$log_file" 2>&1 &
  daemon_pid=$!
}

daemon_pid=
start_daemon
status=0
wait_for_daemon "$daemon_pid" || status=$?
if [ "$status" -eq 1 ] && tail -n 20 "$log_file" | grep -qiE 'iptables|nat'; then
  echo "$me: dockerd could not set up iptables here; starting it without a bridge network" >&2
  start_daemon --iptables=false --bridge=none
  status=0
  wait_for_daemon "$daemon_pid" || status=$?
  if [ "$status" -eq 0 ]; then
    echo "$me: no bridge network: build and run with --network host"
  fi
fi

case "$status" in
  0) echo "$me: dockerd answers (pid $daemon_pid)" ;;
  1)
    echo "$me: dockerd exited; the end of $log_file:" >&2
    tail -n 20 "$log_file" >&2
    exit 1
    ;;
  *)
    echo "$me: dockerd (pid $daemon_pid) did not answer within ${timeout_s} s; see $log_file" >&2
    exit 1
    ;;
esac
