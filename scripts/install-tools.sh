#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian 12 machine:
# Debian packages (Nix, proot, bubblewrap, busybox; Python 3.11, Node and
# OpenJDK 17, which the runtimes' fixtures copy into their store paths) and
# the CNB tools built from the Go module proxy at pinned versions. Safe to
# run again: tools that are already built are kept.
#
# Usage: scripts/install-tools.sh [--with-docker]
#   --with-docker also installs Debian's docker.io (never started as a
#   service: the pack test starts a daemon of its own) and builds pack.
# Tools land in $NIXCNB_TOOLS (default /var/cache/nixcnb-tools/bin). The
# lifecycles are those scripts/lifecycle-versions pins: the default one as
# lifecycle and launcher, and for arm64 (for the arm64 test, run under
# qemu-user through binfmt_misc) as lifecycle-arm64 and launcher-arm64;
# each other one as lifecycle-NAME and launcher-NAME. The qemu-user that
# runs arm64, Debian 13's pinned in scripts/qemu/, lands in
# $NIXCNB_TOOLS/../qemu; Debian 12's arm64 kernel, pinned in scripts/vm/, for the arm64 test's
# emulated machine (Debian's qemu-system-arm), in $NIXCNB_TOOLS/../vm-kernel.
set -euo pipefail

PACK_VERSION=0.40.3
CRANE_VERSION=0.22.1
VERSITYGW_VERSION=1.8.0
# govulncheck 1.9.0 needs a golang.org/x/telemetry version the module proxy
# here refuses; 1.8.0 resolves.
GOVULNCHECK_VERSION=1.8.0

tools_dir=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=debian-apt.sh
. "$here/debian-apt.sh"
with_docker=false
[[ "${1:-}" == "--with-docker" ]] && with_docker=true

log() { printf '==> %s\n' "$*"; }

install_debian_packages() {
  # python3.11, nodejs (Debian's 18 or nodesource's 20: the fixtures find
  # its libraries with ldd) and openjdk-17-jre-headless (its runtime image holds javac and jar) are
  # the runtimes of fixtures/python-web, node-web and jvm-web.
  local packages=(nix-bin proot bubblewrap busybox-static patchelf xz-utils ca-certificates git curl qemu-system-arm
    python3.11 nodejs openjdk-17-jre-headless)
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

# read_pin FILE: pkg, version, arch and sha of the one .deb FILE pins
# (a line "package version arch sha256"; # starts a comment).
read_pin() {
  read -r pkg version arch sha < <(grep -v '^#' "$1")
}

# download_pinned_deb PINS SUITE APT_DIR: downloads the .deb read_pin
# read from PINS out of Debian's SUITE, through a private apt in APT_DIR,
# checks its sha256 and architecture, and sets deb to its path.
download_pinned_deb() {
  local pins=$1 suite=$2 apt_dir apt_arch
  debian_apt_setup "$3" "$suite" "$arch"
  deb=$apt_dir/debs/${pkg}_${version//:/%3a}_$arch.deb
  if [[ ! -f $deb ]]; then
    (cd "$apt_dir/debs" && debian_apt apt-get download -qq "$pkg=$version" 2>&1 | grep -v 'unsandboxed as root' >&2) || true
  fi
  [[ -f $deb ]] || { echo "install-tools: Debian's $suite no longer has $pkg $version (update $pins)" >&2; return 1; }
  local got
  got=$(sha256sum "$deb" | cut -d' ' -f1)
  [[ $got == "$sha" && $(dpkg-deb -f "$deb" Architecture) == "$arch" ]] ||
    { echo "install-tools: $(basename "$deb") has sha256 $got, but $pins pins $sha ($arch)" >&2; return 1; }
}

# install_qemu_user: unpacks the pinned qemu-user .deb (scripts/qemu/),
# checked by sha256, into $qemu_root/VERSION, once.
install_qemu_user() {
  local pkg version arch sha deb
  read_pin "$here/qemu/trixie-amd64.txt"
  qemu_dir=$qemu_root/${version#*:}
  [[ -x $qemu_dir/usr/bin/qemu-aarch64 ]] && return 0
  log "Installing Debian 13's $pkg $version (for arm64 emulation)"
  download_pinned_deb "$here/qemu/trixie-amd64.txt" trixie "$qemu_root/apt"
  rm -rf "$qemu_dir.tmp" && mkdir -p "$qemu_dir.tmp"
  dpkg-deb -x "$deb" "$qemu_dir.tmp"
  mv "$qemu_dir.tmp" "$qemu_dir"
  rm -f "$deb"
}

# install_vm_kernel: unpacks /boot/vmlinuz-* of the pinned arm64 kernel
# .deb (scripts/vm/), checked by sha256, into vm-kernel/PACKAGE_VERSION
# beside the tools, once: the arm64 test boots it in qemu-system-aarch64.
install_vm_kernel() {
  local pkg version arch sha deb root dir
  read_pin "$here/vm/bookworm-arm64.txt"
  root=$(dirname "$tools_dir")/vm-kernel
  dir=$root/${pkg}_$version
  compgen -G "$dir/boot/vmlinuz-*" >/dev/null && return 0
  log "Installing Debian 12's $pkg $version (the arm64 test's emulated machine boots it)"
  download_pinned_deb "$here/vm/bookworm-arm64.txt" bookworm "$root/apt"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir.tmp" --wildcards './boot/vmlinuz-*'
  mv "$dir.tmp" "$dir"
  rm -f "$deb"
}

# enable_arm64_emulation: aarch64 ELF files run directly, through that
# qemu-aarch64, registered with binfmt_misc as nixcnb-qemu-aarch64 from the
# package's own qemu-aarch64.conf: its magic, mask, interpreter (under
# $qemu_dir) and flags OPF (F: the interpreter is opened now, so it also
# runs inside sandboxes that do not show it). Bookworm's qemu-aarch64
# (qemu-user-static 7.2), where installed, is disabled.
enable_arm64_emulation() {
  [[ $(dpkg --print-architecture) == arm64 ]] && return 0
  local qemu_root qemu_dir
  qemu_root=$(dirname "$tools_dir")/qemu
  install_qemu_user
  local binfmt=/proc/sys/fs/binfmt_misc magic mask interp flags
  IFS=: read -r _ _ _ _ magic mask interp flags < "$qemu_dir/usr/share/qemu/binfmt.d/qemu-aarch64.conf"
  interp=$qemu_dir$interp
  [[ -x $interp && $flags == *F* ]] ||
    { echo "install-tools: $qemu_dir's qemu-aarch64.conf names $interp with flags $flags" >&2; return 1; }
  [[ -e $binfmt/register ]] || mount -t binfmt_misc binfmt_misc "$binfmt"
  if grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null; then
    log "Disabling bookworm's qemu-aarch64 in binfmt_misc"
    echo 0 > "$binfmt/qemu-aarch64"
  fi
  local entry=$binfmt/nixcnb-qemu-aarch64
  if [[ -e $entry ]] && ! grep -qx "interpreter $interp" "$entry"; then
    echo -1 > "$entry"
  fi
  if [[ ! -e $entry ]]; then
    log "Enabling arm64 emulation ($interp through binfmt_misc)"
    printf ':nixcnb-qemu-aarch64:M::%s:%s:%s:%s' "$magic" "$mask" "$interp" "$flags" > "$binfmt/register"
  fi
  grep -qx enabled "$entry" ||
    { echo "install-tools: nixcnb-qemu-aarch64 is not enabled in $binfmt" >&2; return 1; }
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

# lifecycle_tools: builds each lifecycle of scripts/lifecycle-versions, its
# lifecycle and launcher, with the replaces its line gives.
lifecycle_tools() {
  local name version replaces suffix module=github.com/buildpacks/lifecycle
  while read -r name version replaces <&3; do
    [[ -z $name || $name == \#* ]] && continue
    # shellcheck disable=SC2086 # replaces is a list of words
    set -- $replaces
    suffix=-$name
    [[ $name == default ]] && suffix=
    for tool in lifecycle launcher; do
      go_tool "$tool$suffix" "$module" "v$version" "$module/cmd/$tool" "-X $module/cmd.Version=$version" "$@"
      if [[ $name == default ]]; then
        GOARCH=arm64 go_tool "$tool-arm64" "$module" "v$version" "$module/cmd/$tool" "-X $module/cmd.Version=$version" "$@"
      fi
    done
  done 3< "$here/lifecycle-versions"
}

install_go_tools() {
  mkdir -p "$tools_dir"
  lifecycle_tools
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
install_vm_kernel
install_go_tools
log "Tools ready in $tools_dir"
