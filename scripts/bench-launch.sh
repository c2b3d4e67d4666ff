#!/usr/bin/env bash
# Benchmarks what running a Nix closure without /nix costs on syscall-heavy
# workloads (stat, exec, read, Python start-up, and a bare launch), several
# ways in one run:
# native (the closure bound at a real /nix/store with bubblewrap, the
# baseline), relocate (the closure rewritten by package relocate to a
# same-length /tmp prefix, run directly) and proot (--bind=STORE:/nix/store;
# the buildpack's proot, Debian sid's, from the .debs buildpack.toml pins,
# kept in /var/cache/nixcnb-tools/debs and fetched with apt the first time,
# which needs root), and relocate and proot again started through the
# launcher's code, as an image's processes are.
# The closure is a fake store built from host files (the host's glibc,
# dash, find and cat patched with patchelf, and Debian's Python 3.11 with
# its standard library, byte-compiled as nixpkgs does). Prints a markdown
# report on stdout (progress on stderr); about 5 minutes with the defaults.
# Installs no package: it only checks that the tools are there
# (scripts/install-tools.sh puts them there). Leaves nothing in /tmp and
# never creates /nix.
#
# Usage: scripts/bench-launch.sh [flags of go run ./bench/launch]
#   -n 10             timed runs of each (way, workload); median and min
#   -files 3000       small files in the data tree
#   -stat-passes 10   passes of find over the tree (stat workload)
#   -execs 500        runs of cat in one dash loop (exec workload)
#   -read-passes 3    cats of every file (read workload)
#   -python-runs 5    starts of the store's python in one dash loop
# Example: scripts/bench-launch.sh -n 5 > bench-launch.md
# A quick try: -n 1 -files 100 -stat-passes 1 -execs 10 -read-passes 1 -python-runs 1
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

missing=()
for tool in go bwrap patchelf ldd dpkg-deb /usr/bin/python3.11; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "bench-launch: missing ${missing[*]}: run scripts/install-tools.sh" \
    "(bwrap is Debian's bubblewrap; apt-get install patchelf python3.11)" >&2
  exit 1
fi

echo "==> go run ./bench/launch $*" >&2
exec go run ./bench/launch "$@"
