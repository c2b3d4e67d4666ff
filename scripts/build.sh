#!/usr/bin/env bash
# Writes a ready-to-use buildpack directory (buildpack.toml + bin/) to OUT_DIR.
#
# Usage: scripts/build.sh OUT_DIR [GOARCH]
#   GOARCH defaults to the machine's (amd64 or arm64). Binaries are static.
set -euo pipefail

out=${1:?usage: scripts/build.sh OUT_DIR [GOARCH]}
arch=${2:-$(go env GOARCH)}
root=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$out/bin"
cd "$root"
source scripts/toolchain.sh
export CGO_ENABLED=0 GOOS=linux GOARCH=$arch
go build -trimpath -ldflags "-s -w" -o "$out/bin/run" ./run
go build -trimpath -ldflags "-s -w" -o "$out/bin/nix-launch" ./cmd/nix-launch
ln -sf run "$out/bin/detect"
ln -sf run "$out/bin/build"
ln -sf nix-launch "$out/bin/run_result.sh"
ln -sf nix-launch "$out/bin/run_proot.sh"
cp buildpack.toml "$out/buildpack.toml"
echo "$out"
