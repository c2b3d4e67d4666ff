#!/usr/bin/env bash
# Benchmarks an unchanged rebuild of an app whose evaluation fetches a
# pinned tarball the size of nixpkgs, with the real lifecycle: garbage
# collection keeping the fetched source (BP_NIX_KEEP_SOURCES_DAYS=7, the
# default) vs collecting it (0, what nix-collect-garbage does), with the
# tarball served on loopback and at a limited rate. Prints a markdown
# report on stdout (progress on stderr); about 12 minutes with the defaults
# (Debian's Nix 2.8 takes about a minute to unpack the 40,000 files).
# Run as root, after scripts/install-tools.sh (it uses the test harness:
# the lifecycle under bubblewrap, a loopback registry).
#
# Usage: scripts/bench-rebuild.sh [flags of go run ./bench/rebuild]
#   -n 3          timed rebuilds of each (way, speed)
#   -files 40000  files in the fetched tree
#   -rate 10      the limited download speed, in MB/s
# Example: scripts/bench-rebuild.sh -n 5 > bench-rebuild.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

if [[ $(id -u) != 0 ]]; then
  echo "bench-rebuild: run as root (the harness runs the lifecycle's phases in bubblewrap as the cnb user)" >&2
  exit 1
fi
tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
for tool in lifecycle crane; do
  if [[ ! -x "$tools_dir/$tool" ]]; then
    echo "bench-rebuild: missing $tools_dir/$tool: run scripts/install-tools.sh" >&2
    exit 1
  fi
done
id -u cnb >/dev/null 2>&1 || useradd -m -u 1001 -U cnb

echo "==> go run ./bench/rebuild $*" >&2
exec go run ./bench/rebuild "$@"
