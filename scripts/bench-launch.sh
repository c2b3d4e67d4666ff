#!/usr/bin/env bash
# Benchmarks what running a Nix closure without /nix costs on syscall-heavy
# workloads (stat, exec, read, and a bare launch), several ways in one run:
# native (the closure bound at a real /nix/store with bubblewrap, the
# baseline), relocate (the closure rewritten by package relocate to a
# same-length /tmp prefix, run directly) and proot (--bind=STORE:/nix/store),
# and relocate and proot again started through the launcher's code, as an
# image's processes are.
# The closure is a fake store built from host files (the host's glibc,
# dash, find and cat patched with patchelf). Prints a markdown report on
# stdout (progress on stderr); about 2 minutes with the defaults. Installs
# nothing: it only checks that the tools are there (scripts/install-tools.sh
# puts them there). Leaves nothing in /tmp and never creates /nix.
#
# Usage: scripts/bench-launch.sh [flags of go run ./bench/launch]
#   -n 10             timed runs of each (way, workload); median and min
#   -files 3000       small files in the data tree
#   -stat-passes 10   passes of find over the tree (stat workload)
#   -execs 500        runs of cat in one dash loop (exec workload)
#   -read-passes 3    cats of every file (read workload)
# Example: scripts/bench-launch.sh -n 5 > bench-launch.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

missing=()
for tool in go bwrap proot patchelf ldd; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "bench-launch: missing ${missing[*]}: run scripts/install-tools.sh" \
    "(bwrap is Debian's bubblewrap; patchelf: apt-get install patchelf)" >&2
  exit 1
fi

echo "==> go run ./bench/launch $*" >&2
exec go run ./bench/launch "$@"
