#!/usr/bin/env bash
# Benchmarks the relocated store runtime (a dyno's: no /nix, no user
# namespaces, no ptrace) against the native one on the same derivation, with
# the real lifecycle: an app whose `app` derivation reads an input closure of
# many files, which the relocated build first copies into its view with
# /nix/store rewritten (and again with the builder's /tmp on the store's
# mount, as a one-off build has them, where the view hard-links what needs no
# rewrite). Each repetition builds from a fresh cache (both
# derivations), then after an app change (`app` alone). Prints a markdown
# report on stdout (progress on stderr); 8 to 16 minutes with the defaults
# on this project's 2-core machine.
# Run as root, after scripts/install-tools.sh (it uses the test harness:
# the lifecycle under bubblewrap, a loopback registry).
#
# Usage: scripts/bench-relocated.sh [flags of go run ./bench/relocated]
#   -n 3          repetitions of each way, each from a fresh cache
#   -files 20000  files of 2 to 4 kB in the input derivation (and one of 8 MiB)
#   -v            stream the builds' output to stderr
# Quick: scripts/bench-relocated.sh -files 2000 -n 1  (about a minute)
# Example: scripts/bench-relocated.sh > bench-relocated.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

if [[ $(id -u) != 0 ]]; then
  echo "bench-relocated: run as root (the harness runs the lifecycle's phases in bubblewrap as the cnb user)" >&2
  exit 1
fi
tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
for tool in lifecycle crane; do
  if [[ ! -x "$tools_dir/$tool" ]]; then
    echo "bench-relocated: missing $tools_dir/$tool: run scripts/install-tools.sh" >&2
    exit 1
  fi
done
id -u cnb >/dev/null 2>&1 || useradd -m -u 1001 -U cnb

echo "==> go run ./bench/relocated $*" >&2
exec go run ./bench/relocated "$@"
