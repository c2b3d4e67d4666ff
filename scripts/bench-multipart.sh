#!/usr/bin/env bash
# Benchmarks a multipart upload through s3objects: the time of Put of one
# big object of pseudo-random bytes (1 GB by default) to versitygw on
# loopback, and the peak RSS of the process doing it, each run in a child
# process of its own; prints a markdown report with the median of the runs
# on stdout (progress on stderr). It measures the s3objects of the working
# tree: run it on two commits to compare them. Installs nothing: it only
# checks that versitygw is there (scripts/install-tools.sh puts it there).
# Needs about 3 times the object's size free in $TMPDIR. Not part of
# scripts/test.sh.
#
# Usage: scripts/bench-multipart.sh [flags of go run ./bench/multipart]
#   -size 1G        each object's bytes
#   -objects 1      objects put at once
#   -runs 3         runs (the median is reported)
#   -part-size ...  s3objects' part size (default: its own, 64 MiB)
#   -label ...      what the report calls the code measured
# Example: scripts/bench-multipart.sh -label "$(git rev-parse --short HEAD)" > bench-multipart.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
if [[ ! -x "$tools_dir/versitygw" ]]; then
  echo "bench-multipart: missing $tools_dir/versitygw: run scripts/install-tools.sh" >&2
  exit 1
fi

echo "==> go run ./bench/multipart $*" >&2
NIXCNB_TOOLS=$tools_dir exec go run ./bench/multipart "$@"
