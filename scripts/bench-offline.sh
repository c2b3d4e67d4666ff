#!/usr/bin/env bash
# Benchmarks an offline build (cache.nixos.org unreachable) with the real
# lifecycle: this buildpack, which leaves out a cache that does not answer
# before Nix runs; the same with BP_NIX_CONFIG='substituters =' by hand;
# and the buildpack before that probe, where Nix retries. Prints a
# markdown report on stdout (progress on stderr). Run as root, after
# scripts/install-tools.sh, from a git clone (it builds the earlier
# revision from a worktree).
#
# Usage: scripts/bench-offline.sh [-n 3] [-before REV] [-v]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

if [[ $(id -u) != 0 ]]; then
  echo "bench-offline: run as root (the harness runs the lifecycle's phases in bubblewrap as the cnb user)" >&2
  exit 1
fi
tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
for tool in lifecycle crane; do
  if [[ ! -x "$tools_dir/$tool" ]]; then
    echo "bench-offline: missing $tools_dir/$tool: run scripts/install-tools.sh" >&2
    exit 1
  fi
done
id -u cnb >/dev/null 2>&1 || useradd -m -u 1001 -U cnb

echo "==> go run ./bench/offline $*" >&2
exec go run ./bench/offline "$@"
