#!/usr/bin/env bash
# Benchmarks the loopback substituter (binarycache's Handler, which serves
# the S3 bucket to Nix during a build) under parallel substitution, with
# the real lifecycle: an app that needs 500 small store paths at build time
# is built once (pushing them to versitygw on loopback), then built again
# from an empty store, so Nix substitutes every one of them, with Nix's
# parallelism at 1 and 8 (max-jobs, http-connections, max-substitution-jobs
# in BP_NIX_CONFIG), and, the alternative, from a copy of the bucket as a
# file:// cache. Reports the Nix step's time and every error: the build's,
# Nix's, the substituter's, S3's 5xx answers. Prints a markdown report on
# stdout (progress on stderr). Run as root, after scripts/install-tools.sh
# (it uses the test harness). Not part of scripts/test.sh.
#
# Usage: scripts/bench-substitute.sh [flags of go run ./bench/substitute]
#   -paths 500      small store paths the app needs
#   -bytes 4096     bytes in each
#   -jobs 1,8       Nix's parallelism, one row each
#   -n 3            measured builds per row
#   -quick          a fast check: -paths 50 -n 1
#   -v              stream the builds' output to stderr
# NIXCNB_NIX_VERSION=2.8 measures with Nix 2.8 instead of 2.34.
# Example: scripts/bench-substitute.sh > bench-substitute.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

if [[ $(id -u) != 0 ]]; then
  echo "bench-substitute: run as root (the harness runs the lifecycle's phases in bubblewrap as the cnb user)" >&2
  exit 1
fi
tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
for tool in lifecycle crane versitygw; do
  if [[ ! -x "$tools_dir/$tool" ]]; then
    echo "bench-substitute: missing $tools_dir/$tool: run scripts/install-tools.sh" >&2
    exit 1
  fi
done
id -u cnb >/dev/null 2>&1 || useradd -m -u 1001 -U cnb

echo "==> go run ./bench/substitute $*" >&2
NIXCNB_TOOLS=$tools_dir exec go run ./bench/substitute "$@"
