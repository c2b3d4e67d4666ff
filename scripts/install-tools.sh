#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian 12 machine:
# Debian packages (Nix, proot, bubblewrap, busybox) and the CNB tools built
# from the Go module proxy at pinned versions. Safe to run again: tools that
# are already built are kept.
#
# Usage: scripts/install-tools.sh [--with-docker]
#   --with-docker also installs Debian's docker.io (never started as a
#   service: the pack test starts a daemon of its own) and builds pack.
# Tools land in $NIXCNB_TOOLS (default /var/cache/nixcnb-tools/bin); the
# arm64 lifecycle and launcher (for the arm64 test, run under qemu-user
# through binfmt_misc) as lifecycle-arm64 and launcher-arm64.
set -euo pipefail

LIFECYCLE_VERSION=0.21.0
PACK_VERSION=0.40.3
CRANE_VERSION=0.22.1
VERSITYGW_VERSION=1.8.0
# govulncheck 1.9.0 needs a golang.org/x/telemetry version the module proxy
# here refuses; 1.8.0 resolves.
GOVULNCHECK_VERSION=1.8.0

tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
with_docker=false
[[ "${1:-}" == "--with-docker" ]] && with_docker=true

log() { printf '==> %s\n' "$*"; }

install_debian_packages() {
  local packages=(nix-bin proot bubblewrap busybox-static patchelf xz-utils ca-certificates git curl
    qemu-user-static binfmt-support)
  $with_docker && packages+=(docker.io)
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "Installing Debian packages: ${missing[*]}"
    # Installing docker.io must not start the system's Docker daemon (its
    # docker0 bridge and iptables rules): where no policy-rc.d says
    # otherwise, deny service starts during the install.
    local policy=/usr/sbin/policy-rc.d added_policy=false
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=true
    fi
    local rc=0
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    if $added_policy; then rm -f "$policy"; fi
    return "$rc"
  fi
}

# enable_arm64_emulation: aarch64 ELF files run directly, through
# qemu-aarch64 registered with binfmt_misc (flags F: the interpreter is
# opened now, so it also runs inside sandboxes that do not show it).
enable_arm64_emulation() {
  [[ $(dpkg --print-architecture) == arm64 ]] && return 0
  if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    log "Enabling arm64 emulation (qemu-aarch64 through binfmt_misc)"
    update-binfmts --enable qemu-aarch64
  fi
  grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
    { echo "install-tools: qemu-aarch64 is not enabled in /proc/sys/fs/binfmt_misc" >&2; return 1; }
}

# go_tool NAME MODULE VERSION PACKAGE LDFLAGS [REPLACE...]
# Builds PACKAGE from MODULE@VERSION in a scratch module of its own, so each
# tool keeps its own dependency pins. $GOARCH, if set, cross-compiles.
go_tool() {
  local name=$1 module=$2 version=$3 package=$4 ldflags=$5
  shift 5
  local stamp="$tools_dir/.$name-$version"
  if [[ -x "$tools_dir/$name" && -f "$stamp" ]]; then return 0; fi
  log "Building $name $version from the Go module proxy"
  local scratch; scratch=$(mktemp -d)
  (
    cd "$scratch"
    go mod init "scratch/$name" >/dev/null 2>&1
    for r in "$@"; do go mod edit -replace "$r"; done
    go get "$package@$version" 2>&1 | grep -v '^go: ' || true
    CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$tools_dir/$name" "$package"
  )
  rm -rf "$scratch"
  touch "$stamp"
}

install_go_tools() {
  mkdir -p "$tools_dir"
  go_tool lifecycle github.com/buildpacks/lifecycle "v$LIFECYCLE_VERSION" \
    github.com/buildpacks/lifecycle/cmd/lifecycle \
    "-X github.com/buildpacks/lifecycle/cmd.Version=$LIFECYCLE_VERSION"
  go_tool launcher github.com/buildpacks/lifecycle "v$LIFECYCLE_VERSION" \
    github.com/buildpacks/lifecycle/cmd/launcher \
    "-X github.com/buildpacks/lifecycle/cmd.Version=$LIFECYCLE_VERSION"
  GOARCH=arm64 go_tool lifecycle-arm64 github.com/buildpacks/lifecycle "v$LIFECYCLE_VERSION" \
    github.com/buildpacks/lifecycle/cmd/lifecycle \
    "-X github.com/buildpacks/lifecycle/cmd.Version=$LIFECYCLE_VERSION"
  GOARCH=arm64 go_tool launcher-arm64 github.com/buildpacks/lifecycle "v$LIFECYCLE_VERSION" \
    github.com/buildpacks/lifecycle/cmd/launcher \
    "-X github.com/buildpacks/lifecycle/cmd.Version=$LIFECYCLE_VERSION"
  go_tool crane github.com/google/go-containerregistry "v$CRANE_VERSION" \
    github.com/google/go-containerregistry/cmd/crane ""
  go_tool versitygw github.com/versity/versitygw "v$VERSITYGW_VERSION" \
    github.com/versity/versitygw/cmd/versitygw ""
  go_tool govulncheck golang.org/x/vuln "v$GOVULNCHECK_VERSION" \
    golang.org/x/vuln/cmd/govulncheck ""
  if $with_docker; then
    go_tool pack github.com/buildpacks/pack "v$PACK_VERSION" github.com/buildpacks/pack "" \
      github.com/BurntSushi/toml=github.com/BurntSushi/toml@v1.3.2
  fi
}

install_debian_packages
enable_arm64_emulation
install_go_tools
log "Tools ready in $tools_dir"
