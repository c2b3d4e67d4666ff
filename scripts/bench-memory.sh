#!/usr/bin/env bash
# Benchmarks pushing a big closure to S3 and fetching it back: time and the
# peak RSS of the process doing it (binarycache's Push and Fetch, each in a
# child process of its own), against a raw copy of the same files through
# the same S3 client and the same program idle. The closure (2 GB by
# default, pseudo-random bytes that do not compress) is written straight
# into a store folder; S3 is versitygw on loopback. Prints a markdown
# report on stdout (progress on stderr). Installs nothing: it only checks
# that versitygw is there (scripts/install-tools.sh puts it there). Needs
# about 4 times the closure's size free in $TMPDIR. Not part of
# scripts/test.sh.
#
# Usage: scripts/bench-memory.sh [flags of go run ./bench/memory]
#   -size 2G        the closure's bytes
#   -paths 16       store paths of data (an app path comes on top)
#   -files 4        files in each store path
#   -parallel 8     transfers at a time
#   -quick          a fast check: -size 200M
# Example: scripts/bench-memory.sh > bench-memory.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
if [[ ! -x "$tools_dir/versitygw" ]]; then
  echo "bench-memory: missing $tools_dir/versitygw: run scripts/install-tools.sh" >&2
  exit 1
fi

echo "==> go run ./bench/memory $*" >&2
NIXCNB_TOOLS=$tools_dir exec go run ./bench/memory "$@"
