#!/usr/bin/env bash
# Benchmarks what a deploy costs against what changed, with the real
# lifecycle: an app whose runtime closure is big (random bytes over many
# library store paths, an app path on top) built cold, rebuilt unchanged,
# after a one-line change to the app path, and after a change to one
# library deep in the closure; each build's lifecycle phases timed, the
# bytes written to the registry and to the cache measured, the layers
# reused and added counted. Compared in the same run: the buildpack as it
# is (layered), BP_NIX_MAX_LAYERS=1 (single layer), a no-op buildpack (the
# lifecycle's floor), and the ideal (the bytes of the store paths that
# changed). Prints a markdown report on stdout (progress on stderr).
# Run as root, after scripts/install-tools.sh (it uses the test harness:
# the lifecycle under bubblewrap, a loopback registry); the defaults need
# about 15 GB of free space in $TMPDIR.
#
# Usage: scripts/bench-deploy.sh [flags of go run ./bench/deploy]
#   -sizes 0.5G,2G  closure sizes (the libraries' bytes together)
#   -paths 30       library store paths
#   -files 16       files in each library path
#   -ways layered,single,noop
#   -quick          a fast check: -sizes 0.1G -paths 10 -files 4
#   -v              stream the builds' output to stderr
# Example: scripts/bench-deploy.sh -quick > bench-deploy.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

if [[ $(id -u) != 0 ]]; then
  echo "bench-deploy: run as root (the harness runs the lifecycle's phases in bubblewrap as the cnb user)" >&2
  exit 1
fi
tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
for tool in lifecycle crane; do
  if [[ ! -x "$tools_dir/$tool" ]]; then
    echo "bench-deploy: missing $tools_dir/$tool: run scripts/install-tools.sh" >&2
    exit 1
  fi
done
id -u cnb >/dev/null 2>&1 || useradd -m -u 1001 -U cnb

echo "==> go run ./bench/deploy $*" >&2
exec go run ./bench/deploy "$@"
