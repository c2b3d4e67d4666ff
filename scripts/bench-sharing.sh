#!/usr/bin/env bash
# Benchmarks sharing one Nix closure through S3 (versitygw on loopback):
# binarycache's Push/Fetch vs the old buildpack's single nix-store --export
# file vs a raw parallel copy, then a small change pushed both ways, then
# the closure mostly served by an upstream binary cache on loopback (first
# push, restore-only deploy, deploy after a one-line change; today vs now).
# Prints a markdown report (progress goes to stderr). Installs nothing: it
# only checks that the tools are there (scripts/install-tools.sh puts them
# there) and makes the Nix release if it is not cached yet. Run as root
# (chroot Nix stores under /tmp); it never creates /nix.
#
# Usage: scripts/bench-sharing.sh [flags of go run ./bench/sharing]
#   -n 3            repetitions (median and min are reported)
#   -host-dirs ...  host folders added to the closure (comma-separated)
#   -parallel 0     transfers at a time for ours and the raw copy (0: 8)
#   -keep           keep the scratch folder
# Example: scripts/bench-sharing.sh -n 5 > bench-sharing.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
missing=()
for tool in go tar xz patchelf dpkg-query; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ -x /usr/bin/nix-store ]] || missing+=("/usr/bin/nix-store (Debian's nix-bin)")
[[ -x "$tools_dir/versitygw" ]] || missing+=("$tools_dir/versitygw")
if ((${#missing[@]})); then
  echo "bench-sharing: missing ${missing[*]}: run scripts/install-tools.sh" >&2
  exit 1
fi
if [[ $(id -u) != 0 ]]; then
  echo "bench-sharing: run as root (the Nix stores are chroot stores under /tmp)" >&2
  exit 1
fi

had_nix=false
[[ -e /nix ]] && had_nix=true

# The Nix release (2.8), made once from Debian's nix-bin and cached where the tests
# keep it.
release_dir=$(dirname "$tools_dir")/nix-release-2.8
if [[ ! -f "$release_dir/nix-release.env" ]]; then
  echo "==> Making the Nix release in $release_dir (scripts/make-nix-release.sh)" >&2
  scripts/make-nix-release.sh --nix 2.8 "$release_dir" >&2
fi
# shellcheck disable=SC1091
source "$release_dir/nix-release.env"

echo "==> go run ./bench/sharing -release $NIX_RELEASE_TARBALL $*" >&2
NIXCNB_TOOLS=$tools_dir go run ./bench/sharing -release "$NIX_RELEASE_TARBALL" "$@"

if ! $had_nix && [[ -e /nix ]]; then
  echo "bench-sharing: /nix appeared on the host" >&2
  exit 1
fi
