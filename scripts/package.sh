#!/usr/bin/env bash
# Packages the buildpack into a .cnb file (an OCI layout of the buildpack
# layer) with pack, for linux/amd64, linux/arm64 or both.
#
# Usage: scripts/package.sh OUT_FILE [--arch amd64|arm64|all] [--buildpack-dir DIR]
#        scripts/package.sh --publish IMAGE
#   --publish         pushes one image index holding linux/amd64 and
#                     linux/arm64 to IMAGE's registry, in one pack run: each
#                     architecture is built into the folder pack takes for
#                     its target (buildpack/linux/<arch>/, each with
#                     buildpack.toml, which is also at the top), then
#                     pack buildpack package IMAGE --publish --target ... --target ...
#   --arch            default: the machine's (go env GOARCH). With "all",
#                     writes one file per architecture, named as pack names
#                     multi-target files: OUT-linux-amd64.cnb, OUT-linux-arm64.cnb.
#   --buildpack-dir   package DIR, a folder scripts/build.sh made (perhaps
#                     with files added, e.g. a test's offline deps/), instead
#                     of building one; its binaries must be for --arch.
#
# pack is $PACK, else $NIXCNB_TOOLS/pack (scripts/install-tools.sh --with-docker
# builds it), else pack on PATH. Packaging to a file needs no Docker daemon.
#
# Why one pack run per architecture: pack reads [[targets]] from the
# buildpack.toml of its *working directory*, and for several targets it wants
# per-target folders (linux/amd64/bin...); without them it writes each
# target's file from the same binaries. Each architecture is built on its own
# and packaged with an explicit --target instead.
set -euo pipefail

usage() { echo "usage: scripts/package.sh OUT_FILE [--arch amd64|arm64|all] [--buildpack-dir DIR] | --publish IMAGE" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
pack=${PACK:-${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}/pack}
if [[ ! -x "$pack" ]]; then
  pack=$(command -v pack) || { echo "package.sh: pack is missing: run scripts/install-tools.sh --with-docker" >&2; exit 1; }
fi

if [[ ${1:-} == --publish ]]; then
  image=${2:-}; [[ -n "$image" && $# -eq 2 ]] || usage
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp "$root/package.toml" "$work/package.toml"
  targets=()
  for a in amd64 arm64; do
    "$root/scripts/build.sh" "$work/buildpack/linux/$a" "$a" >/dev/null
    targets+=(--target "linux/$a")
  done
  cp "$root/buildpack.toml" "$work/buildpack/buildpack.toml"
  (cd "$work" && "$pack" buildpack package "$image" --config package.toml --publish "${targets[@]}")
  echo "$image"
  exit 0
fi

out=${1:-}; [[ -n "$out" && "$out" != -* ]] || usage
shift
arch=$(go env GOARCH)
buildpack_dir=
while (($#)); do
  case $1 in
    --arch) arch=${2:-}; shift 2 || usage ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    --buildpack-dir) buildpack_dir=${2:-}; shift 2 || usage ;;
    --buildpack-dir=*) buildpack_dir=${1#--buildpack-dir=}; shift ;;
    *) usage ;;
  esac
done
case $arch in
  amd64|arm64) arches=("$arch") ;;
  all) arches=(amd64 arm64) ;;
  *) echo "package.sh: --arch $arch: use amd64, arm64 or all" >&2; exit 2 ;;
esac
if [[ -n "$buildpack_dir" ]]; then
  [[ ${#arches[@]} -eq 1 ]] || { echo "package.sh: --buildpack-dir takes one --arch, not all" >&2; exit 2; }
  [[ -f "$buildpack_dir/buildpack.toml" && -d "$buildpack_dir/bin" ]] || {
    echo "package.sh: $buildpack_dir is not a built buildpack (buildpack.toml + bin/): run scripts/build.sh" >&2; exit 1; }
  buildpack_dir=$(cd "$buildpack_dir" && pwd)
fi

mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
[[ "$out" == *.cnb ]] || out=$out.cnb

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for a in "${arches[@]}"; do
  file=$out
  ((${#arches[@]} == 1)) || file=${out%.cnb}-linux-$a.cnb
  stage=$work/$a
  mkdir -p "$stage"
  cp "$root/package.toml" "$stage/package.toml"
  if [[ -n "$buildpack_dir" ]]; then
    cp -a "$buildpack_dir" "$stage/buildpack"
  else
    "$root/scripts/build.sh" "$stage/buildpack" "$a" >/dev/null
  fi
  # From the stage, which has no buildpack.toml or linux/ folder for pack
  # to pick targets from: the target is the --target given.
  (cd "$stage" && "$pack" buildpack package "$file" --config package.toml --format file --target "linux/$a")
  echo "$file"
done
